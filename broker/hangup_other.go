//go:build !linux

package broker

// newHangupWatch: no hangup watch on this platform; a parked Hello keeps
// its socket until its backend is ready or its deadline passes.
func newHangupWatch() (hangupWatch, error) { return nil, errNoHangupWatch }
