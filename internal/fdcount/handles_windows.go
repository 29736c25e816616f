package fdcount

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"

	"github.com/portier/portier/internal/handletable"
)

// CheckHandles is the strict Windows leak check, for the packages that
// own handles themselves (pipes, events, process handles): it records how
// many handles of any kind this process has open and, at cleanup, fails t
// if that changed, naming the kinds of the handles opened during the test
// and still open.
//
// The Go runtime opens handles of its own: for every OS thread it starts
// (a thread, a timer) and, the first time a thread parks, two events. So
// CheckHandles first has the runtime start more threads than a test needs
// at once and park them, with warm (one round of the package's I/O, for
// example a pipe connection) running while every P is kept busy, and
// waits for the count to settle. Thread handles also come and go for a
// moment now and then under Wine, so the count after the test is compared
// until it matches, for up to 5 s: a leaked handle stays.
func CheckHandles(t *testing.T, warm func(*testing.T)) {
	t.Helper()
	warmThreads()
	parkSyscallThreads(t, warm)
	before := settledCount(t)
	was := openHandles(t)
	t.Cleanup(func() {
		after := allHandles(t)
		for end := time.Now().Add(5 * time.Second); after != before && time.Now().Before(end); {
			time.Sleep(10 * time.Millisecond)
			after = allHandles(t)
		}
		if after != before {
			for h := range openHandles(t) {
				if !was[h] {
					t.Logf("opened during the test and still open: %#x (%s)", h, handleType(h))
				}
			}
			t.Errorf("handle count %d before, %d after: leaked %d", before, after, after-before)
		}
	})
}

// allHandles counts this process's handles of every kind.
func allHandles(t *testing.T) int {
	t.Helper()
	n, err := handletable.Count(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// settledCount waits until the handle count stays the same over a few
// looks (idle runtime threads create their two wait events when they
// first park, a moment after they went idle).
func settledCount(t *testing.T) int {
	t.Helper()
	n, same := allHandles(t), 0
	for end := time.Now().Add(5 * time.Second); same < 5 && time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
		if m := allHandles(t); m == n {
			same++
		} else {
			n, same = m, 0
		}
	}
	return n
}

// openHandles returns the values of this process's open handles.
func openHandles(t *testing.T) map[windows.Handle]bool {
	t.Helper()
	open := map[windows.Handle]bool{}
	if err := handletable.Each(os.Getpid(), func(e *handletable.Entry) { open[windows.Handle(e.HandleValue)] = true }); err != nil {
		t.Fatal(err)
	}
	return open
}

var procNtQueryObject = windows.NewLazySystemDLL("ntdll.dll").NewProc("NtQueryObject")

// handleType names the kind of object h is (NtQueryObject,
// ObjectTypeInformation), to say what leaked.
func handleType(h windows.Handle) string {
	const objectTypeInformation = 2
	buf := make([]byte, 1024)
	var n uint32
	if r, _, _ := procNtQueryObject.Call(uintptr(h), objectTypeInformation, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), uintptr(unsafe.Pointer(&n))); r != 0 {
		return fmt.Sprintf("NTSTATUS %#x", r)
	}
	return (*windows.NTUnicodeString)(unsafe.Pointer(&buf[0])).String()
}

// parkSyscallThreads keeps every P busy while warm runs, so that threads
// coming back from a system call (go-winio's completion goroutine's among
// them) find no P free and park: the runtime creates a thread's wait
// events the first time it parks. The spinners stop however warm ends,
// t.Fatal included.
func parkSyscallThreads(t *testing.T, warm func(*testing.T)) {
	t.Helper()
	var stop atomic.Bool
	var spin sync.WaitGroup
	defer spin.Wait()
	defer stop.Store(true)
	for range runtime.GOMAXPROCS(0) {
		spin.Go(func() {
			for !stop.Load() { // busy on purpose: keep the P
			}
		})
	}
	warm(t)
}

// warmThreads makes the runtime hold spareThreads idle OS threads: each
// goroutine locked to its own thread needs one, and a thread unlocked
// before its goroutine ends goes back to the runtime's idle pool.
func warmThreads() {
	const spareThreads = 48
	var locked sync.WaitGroup
	release := make(chan struct{})
	var done sync.WaitGroup
	for range spareThreads {
		locked.Add(1)
		done.Go(func() {
			runtime.LockOSThread()
			locked.Done()
			<-release
			runtime.UnlockOSThread()
		})
	}
	locked.Wait()
	close(release)
	done.Wait()
}
