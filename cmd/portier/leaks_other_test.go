//go:build !linux

package main

import "testing"

// cliChildren would list child processes; only Linux is checked.
func cliChildren(*testing.T) []int { return nil }
