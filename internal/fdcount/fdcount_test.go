package fdcount

import (
	"os"
	"testing"
)

// TestOpenSeesADescriptor: opening a file raises the count by one and
// closing it lowers it again, so a leak cannot hide from Check.
func TestOpenSeesADescriptor(t *testing.T) {
	before := Count(t)
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	if got := Count(t); got != before+1 {
		t.Errorf("with one more file open: %d, want %d", got, before+1)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := Count(t); got != before {
		t.Errorf("after closing it: %d, want %d", got, before)
	}
}

// leakRecorder is a testing.TB that records failures instead of failing.
type leakRecorder struct {
	testing.TB
	failed   bool
	cleanups []func()
}

func (r *leakRecorder) Helper()               {}
func (r *leakRecorder) Errorf(string, ...any) { r.failed = true }
func (r *leakRecorder) Cleanup(f func())      { r.cleanups = append(r.cleanups, f) }
func (r *leakRecorder) runCleanups() {
	for _, f := range r.cleanups {
		f()
	}
}
func (r *leakRecorder) Fatal(args ...any) { r.TB.Fatal(args...) }

// TestCheckReportsALeak: a descriptor left open when the test ends fails it.
func TestCheckReportsALeak(t *testing.T) {
	Count(t) // skips where there is nothing to count
	r := &leakRecorder{TB: t}
	Check(r)
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	r.runCleanups()
	_ = f.Close()
	if !r.failed {
		t.Fatal("Check did not report a descriptor left open")
	}
	r = &leakRecorder{TB: t}
	Check(r)
	r.runCleanups()
	if r.failed {
		t.Fatal("Check reported a leak where there is none")
	}
}
