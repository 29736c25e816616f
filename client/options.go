package client

import (
	"time"

	"github.com/portier/portier/wire"
)

// Defaults of the timeouts Dial applies when the caller sets none.
const (
	// DefaultHandshakeTimeout bounds connecting to the broker and receiving
	// its reply, and separately dialing backend_pipe and writing early data.
	// The reply waits for the broker to start the backend when none runs,
	// which a service definition allows start_timeout for (10 s unless it
	// says otherwise), so the default covers that with room to spare: a
	// backend that starts within its start_timeout is served, and one that
	// does not is refused (BACKEND_SPAWN_FAILED, naming start_timeout)
	// before the client stops waiting.
	DefaultHandshakeTimeout = 15 * time.Second
	// DefaultReadyTimeout bounds the wait for the handoff-ready event after
	// Negotiated.
	DefaultReadyTimeout = 2 * time.Second
	// DefaultAutoStartTimeout bounds how long Dial waits for a broker it
	// started to bind its socket.
	DefaultAutoStartTimeout = 5 * time.Second
)

// Option configures Dial.
type Option func(*config)

type config struct {
	version          string
	socket           string
	handshakeTimeout time.Duration
	readyTimeout     time.Duration
	noHandoff        bool
	autoStart        *AutoStartConfig
	helloSkip        bool
	earlyData        []byte
	traceParent      string
	awaitReady       bool
}

func newConfig(opts []Option) config {
	c := config{handshakeTimeout: DefaultHandshakeTimeout, readyTimeout: DefaultReadyTimeout, helloSkip: true}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	return c
}

// zeroRTT reports whether Dial asks for a 0-RTT handoff (CAP_PORTIER_0RTT:
// the backend, not the broker, writes Negotiated, together with the ready
// event; this client answers a connection that ends before any reply with
// a fresh Hello, see errNoReply). It does when it waits for the ready
// event anyway, because its first request already went with the Hello
// (EarlyData) or because it was asked to (AwaitReady): then one read
// brings both frames instead of two. Otherwise the broker's Negotiated,
// written before the offer, lets Dial return while the backend adopts
// the connection, and the caller's first request travels meanwhile: for
// that plain use a 0-RTT Dial, which returns only once the backend has
// the connection, was measured about 20 % slower (see
// docs/PERFORMANCE.md).
func (c *config) zeroRTT() bool { return len(c.earlyData) > 0 || c.awaitReady }

// AwaitReady makes Dial wait for the backend's handoff-ready event (or
// finish the reconnect fallback) before it returns, so Route is known and a
// backend that cannot be reached at all is a Dial error. Without it, a Dial
// that negotiated a handoff returns at once and the connection settles its
// route on first use (see Conn), which saves the client a wait for the
// backend before its first request.
func AwaitReady() Option { return func(c *config) { c.awaitReady = true } }

// Version asks for a specific backend version (MAJOR.MINOR.PATCH[-pre]); the
// broker serves it when the service definition allows it (its version, or
// its min_version / allow_versions policy) and refuses VERSION_BLOCKED
// otherwise.
//
// Without Version (or with Version("")), Dial takes whatever version the
// service definition names. Protocol v1 has no Hello for that: every Hello
// must carry a valid wanted_version. So Dial sends wanted_version "0.0.0"
// with the portier extension bit wire.CapAnyVersion, which tells a portier
// broker to serve the defined version, whatever it is. A broker without the
// extension (running-process v1) reads it as a client that wants 0.0.0:
// served when its definition sets no minimum, VERSION_BLOCKED otherwise;
// pass Version to reach such a broker's other versions.
func Version(v string) Option { return func(c *config) { c.version = v } }

// wantedVersion returns the Hello's wanted_version and the capability bits that go
// with it.
func (c *config) wantedVersion() (version string, caps uint64) {
	if c.version == "" {
		return wire.AnyVersion, wire.CapAnyVersion
	}
	return c.version, 0
}

// Socket sets the broker's endpoint. Without it Dial uses $PORTIER_SOCKET,
// else $XDG_RUNTIME_DIR/portier/broker.sock, else
// /tmp/portier-$UID/broker.sock; on Windows the named pipe
// \\.\pipe\portier-<hash of the user's SID>.
func Socket(path string) Option { return func(c *config) { c.socket = path } }

// HandshakeTimeout bounds connecting to the broker plus receiving its reply
// (which may include the broker starting the backend), and separately the
// dial of backend_pipe with its early-data write. d <= 0 keeps the default
// (DefaultHandshakeTimeout). ctx's deadline, when earlier, wins.
//
// The Hello tells the broker a deadline a little before this one
// (deadline_unix_ms), so a backend still starting when it passes is
// answered with a typed refusal (BACKEND_SPAWN_FAILED, "still starting")
// that arrives while the client still reads, never with an i/o timeout. A
// service whose start_timeout is longer than the default's margin needs a
// longer HandshakeTimeout (or ctx deadline) to be waited for.
func HandshakeTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.handshakeTimeout = d
		}
	}
}

// ReadyTimeout bounds the wait for the handoff-ready event after Negotiated;
// when it expires the client silently takes the reconnect route. d <= 0
// keeps the default (DefaultReadyTimeout).
func ReadyTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.readyTimeout = d
		}
	}
}

// NoHandoff tells the broker that this client will not adopt a handed-off
// connection (CAP_HANDLE_PASSING is not sent), so it takes the reconnect
// route (or, once its hello-skip cache knows the backend, the direct route).
func NoHandoff() Option { return func(c *config) { c.noHandoff = true } }

// HelloSkip turns on the per-process hello-skip cache (the repeat-connection
// fast path). It is on by default; NoHelloSkip turns it off.
//
// A Dial that completes a Hello records the backend_pipe it was given under
// (broker endpoint, service, version as asked). A later Dial with a cached
// entry dials that backend_pipe directly (Route Direct) without talking to
// the broker, and uses the connection only when its peer runs as this
// user (ipc.CheckPeer, as for the broker). Any failure (nobody listens
// there any more, another user's process does, the early data cannot be
// written) drops the entry and a full Hello follows, silently: the fast path
// is never an error.
//
// An entry lives as long as its backend listens. A backend stops listening
// (and removes its endpoint) as soon as the broker retires it: when its
// definition names another version or launch, its program was rebuilt (the
// broker checks each backend once a second without waiting for a Hello),
// `portier stop` or `restart`, or it has been idle. So a direct dial reaches
// the old build for at most about a second after a rebuild, and the next
// Hello then reaches the new one. The key is the version as asked; with an
// empty Version the entry follows whatever backend served the first Dial
// until it is retired. A direct dial bypasses broker policy (rate limits, a
// version blocked after the entry was cached) for as long as that backend
// lives, and is not counted in the broker's routed connections.
func HelloSkip() Option { return func(c *config) { c.helloSkip = true } }

// NoHelloSkip turns the hello-skip cache off for this Dial: it always sends
// a Hello (and takes the handoff or reconnect route), and does not record
// the backend_pipe it learns.
func NoHelloSkip() Option { return func(c *config) { c.helloSkip = false } }

// EarlyData sends b, the caller's first request, in the same write as the
// Hello, so it reaches the backend without an extra round trip. When the
// handoff does not complete, b is written again on the reconnect route; the
// backend writes its ready event before its application reads, so b is not
// delivered twice (see the package documentation). The one exception is a
// backend that adopts at the very instant ReadyTimeout expires: Dial takes a
// last look for the ready event before giving up, which leaves a window of
// microseconds. b is neither kept nor modified after Dial returns.
func EarlyData(b []byte) Option { return func(c *config) { c.earlyData = b } }

// TraceParent sets the W3C traceparent carried in the Hello frame; the broker
// echoes it in its reply and puts it in the environment of a backend it
// starts for this Hello (TRACEPARENT). It must be a valid W3C Trace Context
// traceparent ("00-<32 hex>-<16 hex>-<2 hex>", lowercase, ids not all zero;
// see wire.ValidTraceparent), else Dial fails with ErrInvalidArgument: a
// broker drops an invalid one, so it would be lost silently.
func TraceParent(tp string) Option { return func(c *config) { c.traceParent = tp } }

// AutoStartConfig configures AutoStart. The zero value uses the defaults.
type AutoStartConfig struct {
	// Binary is the portier executable to start. Empty: $PORTIER_BIN, else
	// the running executable when it is named portier, else portier from
	// $PATH.
	Binary string
	// Timeout bounds the wait for the started broker to bind its socket.
	// <= 0 means DefaultAutoStartTimeout. ctx's deadline, when earlier, wins.
	Timeout time.Duration
}

// AutoStart makes Dial start the broker when its socket is missing (no file,
// or a stale socket nobody accepts on; on Windows no pipe, or one with no
// instance listening): it runs `<binary> serve --socket <path> --log-file
// <dir>/broker.log` detached from this process (its own session on Unix; on
// Windows no console, its own process group and, where the job allows it,
// outside the client's job object; stdin on the null device) and retries
// the connection with exponential backoff (5 ms doubling up to 200 ms)
// until cfg.Timeout. The broker's output goes to broker.log in the
// socket's directory ($XDG_RUNTIME_DIR/portier/broker.log by default; on
// Windows, where a named pipe has no directory, in the broker's state
// directory %LocalAppData%\portier\<pipe name>), which it keeps under
// 1 MiB; when the broker does not come up in time, the error names that
// file and quotes its last line. Concurrent Dials in one process start at
// most one broker per socket path and timeout window; a broker started by
// another process wins the singleton bind and is used.
func AutoStart(cfg AutoStartConfig) Option {
	return func(c *config) { c.autoStart = &cfg }
}
