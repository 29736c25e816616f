//go:build !linux

package main

import "testing"

// cliFDs would count open descriptors; only Linux is checked (-1: skip).
func cliFDs(*testing.T) int { return -1 }

// cliChildren would list child processes; only Linux is checked.
func cliChildren(*testing.T) []int { return nil }
