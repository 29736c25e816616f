//go:build !windows

package backend

import "go.uber.org/goleak"

// leakOptions: nothing outlives a test on this platform.
var leakOptions []goleak.Option
