//go:build !linux && !darwin

package client

import "net"

// checkBrokerPeer has no portable peer-credential query on this platform;
// the private directory around the socket is the only protection.
func checkBrokerPeer(*net.UnixConn) error { return nil }
