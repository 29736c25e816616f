package ipc

import (
	"fmt"

	"golang.org/x/sys/windows"
)

// currentUserSID returns the SID of the user this process runs as (the
// token user, not the default owner, which for administrators is the
// Administrators group).
func currentUserSID() (*windows.SID, error) {
	tu, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return nil, fmt.Errorf("ipc: current user SID: %w", err)
	}
	return tu.User.Sid, nil
}
