//go:build windows

package broker

import (
	"os/exec"
)

// procOS is what the broker holds of a backend process besides its pid.
type procOS struct{}

// startProcess would start cmd for p.
func startProcess(*proc, *exec.Cmd) (func() error, error) { return nil, errWindowsUnsupported }

func (p *proc) kill()          {}
func (p *proc) terminate()     {}
func (p *proc) alive() bool    { return processMatches(p.pid, p.startTime) }
func (p *proc) adoptOS() error { return errWindowsUnsupported }
func (p *proc) releaseOS()     {}
func removeEndpoint(string)    {}

// backendEndpoints lists backend endpoints left behind: none on Windows,
// where a pipe disappears with its last handle.
func backendEndpoints(string) []string { return nil }

// backendEndpoint is the name of a backend's own pipe.
func backendEndpoint(socket, key, random string) string { return socket + "-be-" + key + "-" + random }
