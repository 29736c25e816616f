//go:build darwin

package main

// installSupported: on macOS the login session's service manager is
// launchd.
func installSupported() error { return nil }

func platformInstallPlan(o installOptions) (installPlan, error) { return launchdPlan(o) }
