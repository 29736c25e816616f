//go:build !linux

package main

import (
	"fmt"
	"io"
)

func init() {
	register(command{name: "bench", run: benchCmd,
		summary: "measure direct, handoff, reconnect and proxy (Linux only)"})
}

// benchCmd explains that the bench needs Linux: it reads other processes'
// CPU time and memory from /proc.
func benchCmd(_ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "portier bench: bench runs on Linux only (it reads CPU time and memory of its processes from /proc)")
	return exitFailure
}
