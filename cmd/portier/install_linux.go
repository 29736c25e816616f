//go:build linux

package main

// installSupported: on Linux the login session's service manager is the
// systemd user manager.
func installSupported() error { return nil }

func platformInstallPlan(o installOptions) (installPlan, error) { return systemdPlan(o) }
