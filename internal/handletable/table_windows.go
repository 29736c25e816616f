package handletable

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/windows"
)

// Entry is SYSTEM_HANDLE_TABLE_ENTRY_INFO_EX, one open handle in the
// answer to NtQuerySystemInformation(SystemExtendedHandleInformation).
type Entry struct {
	Object                uintptr
	UniqueProcessID       uintptr
	HandleValue           uintptr
	GrantedAccess         uint32
	CreatorBackTraceIndex uint16
	ObjectTypeIndex       uint16 // the kind of object; indexes differ between systems
	HandleAttributes      uint32
	Reserved              uint32
}

// maxTable bounds the buffer the table is read into (a busy system has a
// few hundred thousand handles at 40 bytes each).
const maxTable = 256 << 20

// Each calls fn for every handle process pid has open, from one snapshot
// of the table; fn must not keep e.
func Each(pid int, fn func(e *Entry)) error {
	if pid <= 0 {
		return fmt.Errorf("handletable: invalid pid %d", pid)
	}
	buf := make([]byte, 1<<20)
	for {
		var n uint32
		err := windows.NtQuerySystemInformation(windows.SystemExtendedHandleInformation,
			unsafe.Pointer(&buf[0]), uint32(len(buf)), &n)
		if errors.Is(err, windows.STATUS_INFO_LENGTH_MISMATCH) && len(buf) < maxTable {
			// The table grows meanwhile: ask for more than was reported.
			buf = make([]byte, max(2*len(buf), int(n)+int(n)/4))
			continue
		}
		if err != nil {
			return fmt.Errorf("handletable: NtQuerySystemInformation: %w", err)
		}
		break
	}
	// SYSTEM_HANDLE_INFORMATION_EX: NumberOfHandles, Reserved, then the
	// entries.
	const hdr = 2 * unsafe.Sizeof(uintptr(0))
	total := *(*uintptr)(unsafe.Pointer(&buf[0]))
	if fit := (uintptr(len(buf)) - hdr) / unsafe.Sizeof(Entry{}); total > fit {
		return fmt.Errorf("handletable: the table claims %d entries, the buffer holds %d", total, fit)
	}
	want := uintptr(pid)
	for _, e := range unsafe.Slice((*Entry)(unsafe.Pointer(&buf[hdr])), total) {
		if e.UniqueProcessID == want {
			fn(&e)
		}
	}
	return nil
}

// Count returns the number of handles process pid has open.
func Count(pid int) (int, error) {
	n := 0
	err := Each(pid, func(*Entry) { n++ })
	return n, err
}
