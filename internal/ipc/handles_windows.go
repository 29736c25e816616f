package ipc

import "github.com/portier/portier/internal/handletable"

// HandleCount returns the number of handles process pid has open: the
// Windows counterpart of counting /proc/<pid>/fd, for leak checks and
// diagnostics. It lists the system's handle table
// (NtQuerySystemInformation, SystemExtendedHandleInformation) rather than
// calling GetProcessHandleCount, which Wine 8 answers with 0 for every
// process.
func HandleCount(pid int) (int, error) {
	if err := checkPID(pid); err != nil {
		return 0, err
	}
	return handletable.Count(pid)
}
