package ipc

import "net"

// checkPeer admits the peer: ListenPipe's protected DACL lets only this
// user open the broker's and backends' pipes, and Windows has no real and
// effective uids to tell apart. Comparing the peer's token SID with ours
// (GetNamedPipeClientProcessId or GetNamedPipeServerProcessId, then the
// process token) belongs here, so that every caller gets it unchanged.
func checkPeer(net.Conn, Self) (Cred, error) { return Cred{}, nil }
