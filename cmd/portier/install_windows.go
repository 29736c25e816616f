//go:build windows

package main

import "errors"

// installSupported: the broker does not run on Windows yet.
func installSupported() error {
	return errors.New("not supported on Windows yet: the portier broker does not run on Windows (only its handle-passing and named-pipe layers exist), so there is nothing to install")
}

func platformInstallPlan(installOptions) (installPlan, error) {
	return installPlan{}, installSupported()
}

// runningBrokerPID: there is no broker on Windows to find.
func runningBrokerPID(string) int { return 0 }

func stopBroker(int) error { return errors.New("not supported on Windows") }
