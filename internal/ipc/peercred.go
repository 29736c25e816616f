package ipc

// Cred is what the kernel says about the process at the other end of a
// local connection, as of the moment that process connected (Linux) or
// asked (darwin). It cannot be forged by the peer, unlike anything the peer
// writes.
type Cred struct {
	// UID is the peer's effective user id (-1 on Windows, where users
	// are SIDs).
	UID int
	// PID is the peer's process id, or 0 if the kernel does not know it
	// (for example a peer in another pid namespace).
	PID int
}
