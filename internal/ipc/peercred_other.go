//go:build unix && !linux && !darwin

package ipc

import "net"

// PeerCred is not implemented on this platform yet; it returns
// ErrUnsupported so callers refuse rather than trust an unknown peer.
func PeerCred(c *net.UnixConn) (Cred, error) {
	return Cred{}, ErrUnsupported
}
