//go:build race

package soak

// raceEnabled: the portier binary under test is built with -race too.
const raceEnabled = true
