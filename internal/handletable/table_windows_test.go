package handletable

import (
	"os"
	"testing"

	"golang.org/x/sys/windows"
)

// A handle this process opens is in the table, with its value, until it
// is closed.
func TestEachSeesAnOpenedHandle(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	listed := func() bool {
		found := false
		if err := Each(os.Getpid(), func(e *Entry) { found = found || e.HandleValue == f.Fd() }); err != nil {
			t.Fatal(err)
		}
		return found
	}
	if !listed() {
		t.Fatalf("handle %#x of an open file is not in the table", f.Fd())
	}
	h := windows.Handle(f.Fd())
	n, err := Count(os.Getpid())
	if err != nil || n < 1 {
		t.Fatalf("Count = %d, %v", n, err)
	}
	var dup windows.Handle
	self := windows.CurrentProcess()
	if err := windows.DuplicateHandle(self, h, self, &dup, 0, false, windows.DUPLICATE_SAME_ACCESS); err != nil {
		t.Fatal(err)
	}
	dupListed := false
	err = Each(os.Getpid(), func(e *Entry) { dupListed = dupListed || e.HandleValue == uintptr(dup) })
	windows.CloseHandle(dup)
	if err != nil || !dupListed {
		t.Errorf("a duplicated handle %#x: listed %v, %v", dup, dupListed, err)
	}
	f.Close()
	if listed() {
		t.Errorf("handle %#x is still listed after Close", h)
	}
}

func TestEachRefusesABadPID(t *testing.T) {
	for _, pid := range []int{0, -1} {
		if err := Each(pid, func(*Entry) {}); err == nil {
			t.Errorf("Each(%d): no error", pid)
		}
	}
}
