//go:build !linux && !darwin && !windows

package broker

// newExitWatch has no way to watch a process that is not the broker's child
// here; re-adopted backends are noticed by the janitor's poll
// (reapAdopted) and when their control connection drops.
func newExitWatch(int, uint64) (exitWatch, error) { return nil, errNoExitWatch }
