package portiertest_test

import "go.uber.org/goleak"

// go-winio runs one completion-port goroutine for the process's lifetime,
// started by the first pipe it opens.
var leakOptions = []goleak.Option{goleak.IgnoreAnyFunction("github.com/Microsoft/go-winio.ioCompletionProcessor")}
