//go:build windows

package main

import "errors"

// installSupported: Windows has no login-session unit for install to
// write yet; clients with client.AutoStart start the broker, or a user
// runs portier serve.
func installSupported() error {
	return errors.New("not supported on Windows yet: there is no login-session service to install the broker into; start it with 'portier serve', or let clients start it (client.AutoStart, 'portier dial --auto-start')")
}

func platformInstallPlan(installOptions) (installPlan, error) {
	return installPlan{}, installSupported()
}

// runningBrokerPID: install does not run on Windows, so it never looks.
func runningBrokerPID(string) int { return 0 }

func stopBroker(int) error { return errors.New("not supported on Windows") }
