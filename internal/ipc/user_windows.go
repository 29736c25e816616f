package ipc

import (
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/windows"
)

// selfSID caches currentUserSID's answer once it succeeded: a process
// token's user never changes, and the peer check asks for it on every
// connection.
var selfSID atomic.Pointer[windows.SID]

// currentUserSID returns the SID of the user this process runs as (the
// token user, not the default owner, which for administrators is the
// Administrators group). Callers must not modify it.
func currentUserSID() (*windows.SID, error) {
	if sid := selfSID.Load(); sid != nil {
		return sid, nil
	}
	tu, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return nil, fmt.Errorf("ipc: current user SID: %w", err)
	}
	selfSID.Store(tu.User.Sid)
	return tu.User.Sid, nil
}
