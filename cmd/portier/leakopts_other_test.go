//go:build !windows

package main

import "go.uber.org/goleak"

// leakOptions: nothing may outlive a test on this platform.
var leakOptions []goleak.Option
