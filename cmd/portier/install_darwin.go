//go:build darwin

package main

// platformInstallPlan: on macOS the login session's service manager is
// launchd.
func platformInstallPlan(o installOptions) (installPlan, error) { return launchdPlan(o) }
