//go:build unix

package ipc

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// boundElsewhere binds path the way a service manager does and returns a
// listener over a duplicate of its descriptor, as net.FileListener gives a
// socket-activated process; the original is closed when the test ends.
func boundElsewhere(t *testing.T, path string) *net.UnixListener {
	t.Helper()
	orig, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	orig.SetUnlinkOnClose(false)
	t.Cleanup(func() { orig.Close() })
	f, err := orig.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	return ln.(*net.UnixListener)
}

// TestAdoptSingleton: an adopted socket serves, holds the singleton lock
// (a second broker is refused), and StopNewClients and Close leave the
// socket file to its owner, which still accepts connections.
func TestAdoptSingleton(t *testing.T) {
	path := sockPath(t)
	l, err := AdoptSingleton(boundElsewhere(t, path))
	if err != nil {
		t.Fatal(err)
	}
	if l.Path() != path {
		t.Errorf("Path() = %q, want %q", l.Path(), path)
	}
	c, err := Dial(dialCtx(t), path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	c.Close()

	if _, err := ListenSingleton(path); !errors.Is(err, ErrAlreadyRunning) {
		t.Errorf("ListenSingleton beside an adopted socket = %v, want ErrAlreadyRunning", err)
	}
	// Stopping, the adopter leaves the file (and the queue) to its owner.
	if removed, err := l.StopNewClients(); removed || err != nil {
		t.Errorf("StopNewClients on an adopted socket = %v, %v; want it left alone", removed, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("Close removed the socket its owner bound: %v", err)
	}
	// The owner's descriptor still listens: a connection queues for the
	// next broker.
	c, err = Dial(dialCtx(t), path)
	if err != nil {
		t.Fatalf("dial after the adopter closed: %v", err)
	}
	c.Close()
	// And the lock was released with Close.
	l2, err := AdoptSingleton(boundElsewhere(t, filepath.Join(filepath.Dir(path), "b.sock")))
	if err != nil {
		t.Fatal(err)
	}
	l2.Close()
}

// TestAdoptSingletonRefusals: a socket in a directory others can enter, and
// a socket whose lock a running broker holds, are refused and closed.
func TestAdoptSingletonRefusals(t *testing.T) {
	t.Run("open directory", func(t *testing.T) {
		dir := privateTemp(t)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		ul := boundElsewhere(t, filepath.Join(dir, "broker.sock"))
		_, err := AdoptSingleton(ul)
		var de *DirError
		if !errors.As(err, &de) || de.Problem != ProblemBadMode {
			t.Fatalf("AdoptSingleton in a 0755 directory = %v, want a bad_mode DirError", err)
		}
		if _, err := ul.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("the refused listener was not closed: Accept = %v", err)
		}
	})
	t.Run("lock held", func(t *testing.T) {
		path := sockPath(t)
		running, err := ListenSingleton(path)
		if err != nil {
			t.Fatal(err)
		}
		defer running.Close()
		// A service manager that finds the path taken unlinks it and binds
		// again, as systemd does.
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		ul := boundElsewhere(t, path)
		if _, err := AdoptSingleton(ul); !errors.Is(err, ErrAlreadyRunning) {
			t.Fatalf("AdoptSingleton while another broker holds the lock = %v, want ErrAlreadyRunning", err)
		}
		if _, err := ul.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("the refused listener was not closed: Accept = %v", err)
		}
	})
	t.Run("abstract", func(t *testing.T) {
		ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: "@portier-adopt-test-" + strconv.Itoa(os.Getpid()), Net: "unix"})
		if err != nil {
			t.Skipf("no abstract sockets here: %v", err)
		}
		if _, err := AdoptSingleton(ul); err == nil {
			t.Fatal("adopted an abstract socket")
		}
	})
}
