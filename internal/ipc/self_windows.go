package ipc

import "net"

// checkPeer compares the user SID of the token of c's peer process with
// this process's (pipePeer). Windows has no real and effective user ids to
// tell apart, so the rule makes no difference. Cred.UID is -1: Windows
// users are SIDs, not numbers.
func checkPeer(c net.Conn, _ Self) (Cred, error) {
	pid, err := pipePeer(c)
	return Cred{UID: -1, PID: pid}, err
}

// selfUID has no meaning on Windows (see checkPeer).
func selfUID(Self) int { return -1 }

// checkPeerAs is checkPeer: the SID comparison has no uid to keep.
func checkPeerAs(c net.Conn, self Self, _ int) (Cred, error) { return checkPeer(c, self) }
