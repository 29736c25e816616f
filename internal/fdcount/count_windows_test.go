package fdcount

import (
	"os"
	"runtime"
	"sync"
	"testing"
)

// TestCountIgnoresThreads: the Go runtime's per-thread handles (thread,
// events, timers) do not move the count, so a test that needed more OS
// threads than the one before it is not taken for a leak; pipe handles do.
func TestCountIgnoresThreads(t *testing.T) {
	before := Count(t)
	// New OS threads, kept by the runtime after their goroutines end.
	const threads = 8
	var locked, done sync.WaitGroup
	release := make(chan struct{})
	for range threads {
		locked.Add(1)
		done.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			locked.Done()
			<-release
		})
	}
	locked.Wait()
	if got := Count(t); got != before {
		t.Errorf("with %d more OS threads: %d, want %d", threads, got, before)
	}
	close(release)
	done.Wait()

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	if got := Count(t); got != before+2 {
		t.Errorf("with both ends of a pipe open: %d, want %d", got, before+2)
	}
	_ = r.Close()
	_ = w.Close()
	if got := Count(t); got != before {
		t.Errorf("after closing them: %d, want %d", got, before)
	}
}
