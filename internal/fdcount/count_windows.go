package fdcount

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/windows"
)

// handleEntry is SYSTEM_HANDLE_TABLE_ENTRY_INFO_EX, one open handle in the
// answer to NtQuerySystemInformation(SystemExtendedHandleInformation).
type handleEntry struct {
	Object                uintptr
	UniqueProcessID       uintptr
	HandleValue           uintptr
	GrantedAccess         uint32
	CreatorBackTraceIndex uint16
	ObjectTypeIndex       uint16
	HandleAttributes      uint32
	Reserved              uint32
}

// maxTable bounds the buffer the handle table is read into (a busy system
// has a few hundred thousand handles at 40 bytes each).
const maxTable = 256 << 20

// fileType is the object type index of file objects, learned once from a
// handle known to be one.
var fileType = sync.OnceValues(func() (uint16, error) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		return 0, fmt.Errorf("fdcount: %w", err)
	}
	defer f.Close()
	var typ uint16
	found := false
	err = eachHandle(func(e *handleEntry) {
		if e.HandleValue == f.Fd() {
			typ, found = e.ObjectTypeIndex, true
		}
	})
	if err != nil {
		return 0, err
	}
	if !found {
		return 0, errors.New("fdcount: the handle table does not list a file this process opened")
	}
	return typ, nil
})

// count returns the number of this process's handles to file objects.
// Counting every handle would not do: the Go runtime opens a thread
// handle, events and timers for each OS thread it starts and keeps them
// while the thread is parked, so the total grows with the number of
// threads a test happened to need. GetProcessHandleCount would also count
// those, and Wine answers it with 0.
func count() (int, error) {
	typ, err := fileType()
	if err != nil {
		return 0, err
	}
	n := 0
	err = eachHandle(func(e *handleEntry) {
		if e.ObjectTypeIndex == typ {
			n++
		}
	})
	return n, err
}

// eachHandle calls fn for every handle this process has open.
func eachHandle(fn func(*handleEntry)) error {
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
			return fmt.Errorf("fdcount: NtQuerySystemInformation: %w", err)
		}
		break
	}
	// SYSTEM_HANDLE_INFORMATION_EX: NumberOfHandles, Reserved, then the
	// entries.
	const hdr = 2 * unsafe.Sizeof(uintptr(0))
	total := *(*uintptr)(unsafe.Pointer(&buf[0]))
	if fit := (uintptr(len(buf)) - hdr) / unsafe.Sizeof(handleEntry{}); total > fit {
		return fmt.Errorf("fdcount: handle table claims %d entries, the buffer holds %d", total, fit)
	}
	self := uintptr(os.Getpid())
	for _, e := range unsafe.Slice((*handleEntry)(unsafe.Pointer(&buf[hdr])), total) {
		if e.UniqueProcessID == self {
			fn(&e)
		}
	}
	return nil
}
