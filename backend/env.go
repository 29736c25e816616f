package backend

// Environment a broker gives every backend it starts. They are the contract
// between the broker's spawner and this package.
const (
	EnvService     = "PORTIER_SERVICE"          // service name
	EnvVersion     = "PORTIER_VERSION"          // version of the definition
	EnvBroker      = "PORTIER_BROKER"           // broker socket to register on
	EnvEndpoint    = "PORTIER_BACKEND_ENDPOINT" // where the backend must listen
	EnvSpawnSecret = "PORTIER_SPAWN_SECRET"     // 32 random bytes, hex
	EnvTraceParent = "TRACEPARENT"              // W3C trace context of the Hello that started it
)
