//go:build linux || darwin

package client

import (
	"fmt"
	"net"

	"github.com/portier/portier/internal/ipc"
)

// checkBrokerPeer verifies that the process serving the broker socket runs as
// our effective uid (the credentials the kernel recorded at connect time).
func checkBrokerPeer(uc *net.UnixConn) error {
	cred, err := ipc.PeerCred(uc)
	if err != nil {
		return fmt.Errorf("peer credentials: %w", err)
	}
	if cred.UID != selfEUID {
		return fmt.Errorf("socket is served by uid %d, not by this user (uid %d)", cred.UID, selfEUID)
	}
	return nil
}
