//go:build unix

package ipc

import (
	"fmt"
	"net"
	"os"
)

func checkPeer(c net.Conn, self Self) (Cred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Cred{}, fmt.Errorf("ipc: CheckPeer: %T is not a Unix domain socket", c)
	}
	cred, err := PeerCred(uc)
	if err != nil {
		return Cred{}, err
	}
	// Not cached: a process may change its uids (syscall.Setuid applies to
	// every thread), and the check must see the ones in force.
	want := os.Getuid()
	if self == EffectiveUID {
		want = os.Geteuid()
	}
	if cred.UID != want {
		return cred, &ForeignPeerError{Peer: cred, Self: self, Want: want}
	}
	return cred, nil
}
