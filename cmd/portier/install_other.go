//go:build !linux && !darwin && !windows

package main

import "errors"

// installSupported: no service manager integration on the other Unix
// systems yet.
func installSupported() error {
	return errors.New("not supported on this system yet: portier knows systemd (Linux) and launchd (macOS); run 'portier serve' from your session's startup, or let clients start it (client.AutoStart)")
}

func platformInstallPlan(installOptions) (installPlan, error) {
	return installPlan{}, installSupported()
}
