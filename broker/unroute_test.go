//go:build unix

package broker

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/portier/portier/client"
)

func init() { extraRoles["linger"] = runLinger }

// runLinger is an echo backend (exiting when the broker asks it to
// quiesce) that, on SIGUSR1, closes its control
// connection (without an Unregister) and its listener, as a dying process
// does, and then lingers until it is terminated, as a process whose exit
// takes a while does.
func runLinger(ctx context.Context) int {
	env, err := readSpawnEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: env.endpoint, Net: "unix"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		return 1
	}
	go serveEcho(ln)
	reg := env.register(env.secret)
	reg.HandoffCapable = false
	ctrl, rr, err := registerByHand(env.broker, reg)
	if err != nil || !rr.GetAccepted() {
		fmt.Fprintln(os.Stderr, "register:", err, rr.GetReason())
		return 1
	}
	quiesce := make(chan struct{})
	go func() {
		// Any frame from the broker is a Quiesce here; EOF is its exit.
		_, _ = ctrl.Read(make([]byte, 1))
		close(quiesce)
	}()
	select {
	case <-usr1:
	case <-quiesce:
		return 0
	case <-ctx.Done():
		return 0
	}
	ln.SetUnlinkOnClose(false) // a dying process removes nothing
	ln.Close()
	ctrl.Close()
	fmt.Fprintln(os.Stderr, "control connection and listener closed; lingering")
	<-ctx.Done()
	return 0
}

// TestBackendDroppingControlIsUnroutedAtOnce: a backend whose control
// connection drops without an Unregister is dying; the next Hello starts a
// new backend instead of sending the client to its endpoint, though its
// process has not exited yet.
func TestBackendDroppingControlIsUnroutedAtOnce(t *testing.T) {
	h := newHarness(t, nil)
	h.define("linger", "1.0.0", "linger", "")
	h.warm("linger")
	first := h.onlyBackend()
	if err := syscall.Kill(int(first.GetPid()), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the broker to see the control connection drop", func() bool {
		return h.onlyBackendState(first.GetPid()) == "ready"
	})
	c, err := h.dial("linger", client.NoHandoff())
	if err != nil {
		t.Fatalf("dial after the backend dropped its control connection: %v", err)
	}
	echo(t, c, "served by a new backend")
	c.Close()
	if n := h.spawns("linger", "started"); n != 2 {
		t.Fatalf("spawns = %d, want 2 (the dying backend replaced)", n)
	}
}

// TestFailureWindowPerBackendProcess: failed handoffs count against the
// backend process that failed them. Once it has failed enough to turn
// handoffs off, a new process of the same service and version (the
// definition now names a healthy program) is handed clients at once, not
// sent to reconnect with reason rate_limited for the rest of the window:
// whether the failing process was replaced while it still lived (it
// dropped its control connection and lingers) or after it exited.
func TestFailureWindowPerBackendProcess(t *testing.T) {
	for _, c := range []struct {
		name string
		end  func(pid int) error
		gone bool // the broker sees the failing process exit
	}{
		{"replaced while alive", func(pid int) error { return syscall.Kill(pid, syscall.SIGUSR1) }, false},
		{"after exit", func(pid int) error { return syscall.Kill(-pid, syscall.SIGKILL) }, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.Handoff.FailureLimit = 2 })
			h.define("svc", "1.0.0", "reject", "")
			h.warm("svc")
			bad := h.onlyBackend()
			for i := range 3 {
				c, err := h.dial("svc")
				if err != nil {
					t.Fatalf("dial %d: %v", i, err)
				}
				echo(t, c, "reconnected")
				c.Close()
			}
			h.settle()
			if n := counterValue(t, h.b.metrics.hellos.WithLabelValues("svc", "reconnect", "rate_limited")); n != 1 {
				t.Fatalf("Hellos sent to reconnect as rate_limited = %d, want 1 (the failing process's window is full)", n)
			}
			h.define("svc", "1.0.0", "echo", "")
			if err := c.end(int(bad.GetPid())); err != nil {
				t.Fatal(err)
			}
			want := map[bool]string{true: "", false: "ready"}[c.gone]
			eventually(t, 10*time.Second, "the broker to let go of the failing backend", func() bool { return h.onlyBackendState(bad.GetPid()) == want })
			conn, err := h.dial("svc", client.AwaitReady())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if conn.Route() != client.Handoff {
				t.Fatalf("route to the new backend process = %s, want handoff (it inherited the old one's failures)", conn.Route())
			}
			echo(t, conn, "handed off")
		})
	}
}
