package ipc

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/windows"
)

// handleEntryEx is SYSTEM_HANDLE_TABLE_ENTRY_INFO_EX, one open handle in
// the answer to NtQuerySystemInformation(SystemExtendedHandleInformation).
type handleEntryEx struct {
	Object                uintptr
	UniqueProcessID       uintptr
	HandleValue           uintptr
	GrantedAccess         uint32
	CreatorBackTraceIndex uint16
	ObjectTypeIndex       uint16
	HandleAttributes      uint32
	Reserved              uint32
}

// maxHandleInfo bounds the buffer HandleCount grows to (a busy system has
// a few hundred thousand handles at 40 bytes each).
const maxHandleInfo = 256 << 20

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
	buf := make([]byte, 1<<20)
	for {
		var n uint32
		err := windows.NtQuerySystemInformation(windows.SystemExtendedHandleInformation, unsafe.Pointer(&buf[0]), uint32(len(buf)), &n)
		if errors.Is(err, windows.STATUS_INFO_LENGTH_MISMATCH) && len(buf) < maxHandleInfo {
			// The table grows meanwhile: ask for more than was reported.
			buf = make([]byte, max(2*len(buf), int(n)+int(n)/4))
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("ipc: NtQuerySystemInformation: %w", err)
		}
		break
	}
	// SYSTEM_HANDLE_INFORMATION_EX: NumberOfHandles, Reserved, then the
	// entries.
	const hdr = 2 * unsafe.Sizeof(uintptr(0))
	count := *(*uintptr)(unsafe.Pointer(&buf[0]))
	if max := (uintptr(len(buf)) - hdr) / unsafe.Sizeof(handleEntryEx{}); count > max {
		return 0, fmt.Errorf("ipc: handle table claims %d entries, buffer holds %d", count, max)
	}
	entries := unsafe.Slice((*handleEntryEx)(unsafe.Pointer(&buf[hdr])), count)
	n := 0
	for _, e := range entries {
		if e.UniqueProcessID == uintptr(pid) {
			n++
		}
	}
	return n, nil
}
