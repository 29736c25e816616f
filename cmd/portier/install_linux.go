//go:build linux

package main

// platformInstallPlan: on Linux the login session's service manager is the
// systemd user manager.
func platformInstallPlan(o installOptions) (installPlan, error) { return systemdPlan(o) }
