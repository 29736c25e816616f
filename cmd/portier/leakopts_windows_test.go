package main

import "go.uber.org/goleak"

// leakOptions: go-winio (the pipes of the CLI, the broker's backends and
// the tests' clients) keeps one completion-port goroutine for the life of
// the process by design.
var leakOptions = []goleak.Option{goleak.IgnoreAnyFunction("github.com/Microsoft/go-winio.ioCompletionProcessor")}
