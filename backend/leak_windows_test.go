package backend

import "go.uber.org/goleak"

// leakOptions: go-winio keeps one completion-port goroutine for the life of
// the process by design (the backend's pipes use it).
var leakOptions = []goleak.Option{goleak.IgnoreAnyFunction("github.com/Microsoft/go-winio.ioCompletionProcessor")}
