package main

import (
	"fmt"
	"net"
	"net/netip"
)

// checkMetricsAddr accepts --metrics-listen's host:port when the host is a
// loopback address (or "localhost"), or anything with allowRemote. The
// endpoint has no authentication and names the services a user runs, so
// reaching it from the network is an explicit choice.
func checkMetricsAddr(addr string, allowRemote bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--metrics-listen %q: want host:port, such as 127.0.0.1:9464: %w", addr, err)
	}
	if allowRemote {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
		return nil
	}
	shown := host
	if shown == "" {
		shown = "every interface"
	}
	return fmt.Errorf("--metrics-listen %q would serve metrics on %s, beyond this machine; use a loopback address such as 127.0.0.1:PORT, or add --metrics-allow-remote", addr, shown)
}
