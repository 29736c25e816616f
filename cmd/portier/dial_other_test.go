//go:build !windows

package main

import "go.uber.org/goleak"

// leakOptions: nothing here runs a goroutine for the life of the process.
var leakOptions []goleak.Option
