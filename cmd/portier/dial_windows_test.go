package main

import "go.uber.org/goleak"

// leakOptions: go-winio runs one I/O completion goroutine for the life of
// the process, started by the first pipe opened.
var leakOptions = []goleak.Option{goleak.IgnoreAnyFunction("github.com/Microsoft/go-winio.ioCompletionProcessor")}
