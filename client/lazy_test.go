package client

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// gate is a one-shot signal from the test to a broker script.
type gate chan struct{}

func (g gate) wait(t testing.TB) {
	select {
	case <-g:
	case <-time.After(ioTimeout):
		t.Error("script gate never opened")
	}
}

// TestLazyWritesReplayedOnFallback: writes made before the route settled are
// kept and replayed, with the early data, on the reconnect route.
func TestLazyWritesReplayedOnFallback(t *testing.T) {
	open := make(gate)
	e := newEnv(t, func(fb *fakeBroker, c net.Conn, hf *pb.Frame, _ *pb.Hello) {
		write(c, handoffReply(fb.t, hf, fb.pipeOf()))
		open.wait(fb.t)
		// No ready event: the connection closes (a rejecting backend).
	})
	c, err := Dial(t.Context(), "echo", Socket(e.fb.sock), EarlyData([]byte("REQ1")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, w := range []string{"W1", "W2"} {
		if _, err := c.Write([]byte(w)); err != nil {
			t.Fatalf("write before the route settled: %v", err)
		}
	}
	// The half-close is replayed too: the backend reads EOF after the
	// replay while the client still reads. A named pipe cannot half-close,
	// so there CloseWrite fails, changes nothing, and Close ends the stream.
	err = c.CloseWrite()
	if halfCloseWorks && err != nil {
		t.Fatal(err)
	}
	if !halfCloseWorks && !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("CloseWrite on a named pipe: %v, want errors.ErrUnsupported", err)
	}
	close(open)
	if got := readString(t, c, 2); got != "B>" {
		t.Fatalf("read %q, want the reconnect backend's B>", got)
	}
	if c.Route() != Reconnect {
		t.Fatalf("route %v, want reconnect", c.Route())
	}
	if !halfCloseWorks {
		_ = c.Close()
	}
	if rec := e.rec.next(t); rec.data != "REQ1W1W2" {
		t.Fatalf("backend_pipe got %q, want the replay REQ1W1W2 (and its end)", rec.data)
	}
}

// TestLazyAdoptAfterWrites: writes made before the ready event arrived reach
// the adopting backend once, and backend_pipe is never dialed.
func TestLazyAdoptAfterWrites(t *testing.T) {
	open := make(gate)
	e := newEnv(t, func(fb *fakeBroker, c net.Conn, hf *pb.Frame, _ *pb.Hello) {
		write(c, handoffReply(fb.t, hf, fb.pipeOf()))
		open.wait(fb.t)
		write(c, goodReady(fb.t), []byte("A>"))
		fb.adopted <- drain(c)
	})
	c, err := Dial(t.Context(), "echo", Socket(e.fb.sock), EarlyData([]byte("REQ1")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.settled.Load() {
		t.Fatal("Dial waited for the ready event; it should return after Negotiated")
	}
	if _, err := c.Write([]byte("W1")); err != nil {
		t.Fatal(err)
	}
	close(open)
	if got := readString(t, c, 2); got != "A>" {
		t.Fatalf("read %q, want A>", got)
	}
	if c.Route() != Handoff {
		t.Fatalf("route %v, want handoff", c.Route())
	}
	if _, err := c.Write([]byte("more")); err != nil {
		t.Fatal(err)
	}
	endWrites(t, c)
	if got := e.fb.recvAdopted(t); got != "REQ1W1more" {
		t.Fatalf("backend read %q, want REQ1W1more", got)
	}
	e.rec.assertUntouched(t)
}

// TestLazyReadDeadline: the caller's read deadline interrupts the wait for
// the ready event without giving up on the handoff.
func TestLazyReadDeadline(t *testing.T) {
	open := make(gate)
	e := newEnv(t, func(fb *fakeBroker, c net.Conn, hf *pb.Frame, _ *pb.Hello) {
		write(c, handoffReply(fb.t, hf, fb.pipeOf()))
		open.wait(fb.t)
		write(c, goodReady(fb.t), []byte("A>"))
		fb.adopted <- drain(c)
	})
	c, err := Dial(t.Context(), "echo", Socket(e.fb.sock))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read with a passed deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	close(open)
	_ = c.SetReadDeadline(time.Time{})
	if got := readString(t, c, 2); got != "A>" {
		t.Fatalf("read %q, want A>", got)
	}
	if c.Route() != Handoff {
		t.Fatalf("route %v, want handoff", c.Route())
	}
	endWrites(t, c)
	e.fb.recvAdopted(t)
	e.rec.assertUntouched(t)
}

// TestLazyCloseWhilePending: closing before the route settled dials nothing.
func TestLazyCloseWhilePending(t *testing.T) {
	e := newEnv(t, func(fb *fakeBroker, c net.Conn, hf *pb.Frame, _ *pb.Hello) {
		write(c, handoffReply(fb.t, hf, fb.pipeOf()))
		drain(c)
	})
	c, err := Dial(t.Context(), "echo", Socket(e.fb.sock))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v, want net.ErrClosed", err)
	}
	e.rec.assertUntouched(t)
}

// TestAwaitReady: with AwaitReady, Dial itself settles the route (here the
// fallback), so backend_pipe already has the early data when Dial returns.
func TestAwaitReady(t *testing.T) {
	e := newEnv(t, func(fb *fakeBroker, c net.Conn, hf *pb.Frame, _ *pb.Hello) {
		write(c, handoffReply(fb.t, hf, fb.pipeOf()))
	})
	c, err := Dial(t.Context(), "echo", Socket(e.fb.sock), EarlyData([]byte("REQ1")), AwaitReady())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.settled.Load() || c.route != Reconnect {
		t.Fatalf("AwaitReady Dial returned an unsettled route (%v)", c.route)
	}
	readString(t, c, 2)
	endWrites(t, c)
	if rec := e.rec.next(t); rec.data != "REQ1" {
		t.Fatalf("backend_pipe got %q, want REQ1", rec.data)
	}
}

// TestLazyReplayBound: a write that would push the replay copy past
// maxReplay waits for the route to settle first, then goes through.
func TestLazyReplayBound(t *testing.T) {
	e := newEnv(t, func(fb *fakeBroker, c net.Conn, hf *pb.Frame, _ *pb.Hello) {
		write(c, handoffReply(fb.t, hf, fb.pipeOf()))
		// The first small write is in the socket; only then adopt.
		b := make([]byte, 2)
		if _, err := io.ReadFull(c, b); err != nil {
			fb.t.Error(err)
			return
		}
		write(c, goodReady(fb.t))
		rest := drain(c)
		fb.adopted <- append(b, rest...)
	})
	c, err := Dial(t.Context(), "echo", Socket(e.fb.sock))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("W1")); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", maxReplay)
	if _, err := c.Write([]byte(big)); err != nil {
		t.Fatal(err)
	}
	if !c.settled.Load() || c.Route() != Handoff {
		t.Fatal("an over-bound write did not settle the route first")
	}
	endWrites(t, c)
	if got := e.fb.recvAdopted(t); got != "W1"+big {
		t.Fatalf("backend read %d bytes, want %d", len(got), 2+len(big))
	}
	e.rec.assertUntouched(t)
}

// TestLazyWriteErrorAfterAdoption: a write that fails because the backend
// adopted the socket and then closed it reports the error (nothing replays
// it), rather than pretending the reconnect route will carry it.
func TestLazyWriteErrorAfterAdoption(t *testing.T) {
	open := make(gate)
	closed := make(chan struct{})
	e := newEnv(t, func(fb *fakeBroker, c net.Conn, hf *pb.Frame, _ *pb.Hello) {
		write(c, handoffReply(fb.t, hf, fb.pipeOf()))
		open.wait(fb.t)
		write(c, goodReady(fb.t))
		c.Close()
		close(closed)
	})
	c, err := Dial(t.Context(), "echo", Socket(e.fb.sock))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	close(open)
	<-closed
	var werr error
	for i := 0; i < 100 && werr == nil; i++ { // the first writes may still land in the socket buffer
		was := c.settled.Load()
		_, werr = c.Write([]byte("lost"))
		if !was && c.settled.Load() && werr == nil {
			t.Fatal("the write that found the adopted socket closed reported success")
		}
	}
	if werr == nil {
		t.Fatal("writes to an adopted socket the backend closed kept succeeding")
	}
	if c.Route() != Handoff {
		t.Fatalf("route %v, want handoff (the ready event had arrived)", c.Route())
	}
	e.rec.assertUntouched(t)
}

// TestRehelloWhenBackendPipeDead: after a failed handoff whose backend_pipe
// cannot be dialed (the backend died with it), Dial asks the broker again
// without the handoff capability and is served by the backend it names.
func TestRehelloWhenBackendPipeDead(t *testing.T) {
	for _, awaitReady := range []bool{true, false} {
		t.Run(map[bool]string{true: "in Dial", false: "on first use"}[awaitReady], func(t *testing.T) {
			dead := endpointIn(newDir(t), "dead")
			var e *testEnv
			e = newEnv(t, func(fb *fakeBroker, c net.Conn, hf *pb.Frame, h *pb.Hello) {
				if fb.hellos.Load() == 1 {
					// The first answer announces a handoff to a backend
					// that is gone: no ready event, a dead endpoint.
					write(c, handoffReply(fb.t, hf, dead))
					return
				}
				if caps := h.GetClientCapabilities(); caps&wire.CapHandlePassing != 0 {
					fb.t.Errorf("the retried Hello asks for a handoff (caps %#x)", caps)
				} else if caps&wire.CapAnyVersion == 0 {
					// Dial was given no Version: without the bit the
					// broker would refuse 0.0.0 as VERSION_BLOCKED.
					fb.t.Errorf("the retried Hello lost CapAnyVersion (caps %#x)", caps)
				}
				write(c, replyBytes(fb.t, hf, negotiated(e.rec.path, nil, 0)))
			})
			opts := []Option{Socket(e.fb.sock), EarlyData([]byte("REQ1"))}
			if awaitReady {
				opts = append(opts, AwaitReady())
			}
			c, err := Dial(t.Context(), "echo", opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := readString(t, c, 2); got != "B>" {
				t.Fatalf("read %q, want the live backend's B>", got)
			}
			if c.Route() != Reconnect || c.BackendPipe() != e.rec.path {
				t.Fatalf("route %v via %q", c.Route(), c.BackendPipe())
			}
			endWrites(t, c)
			if rec := e.rec.next(t); rec.data != "REQ1" {
				t.Fatalf("backend got %q, want the early data once", rec.data)
			}
			if n := e.fb.hellos.Load(); n != 2 {
				t.Fatalf("%d Hellos, want 2", n)
			}
		})
	}
}

// TestLastChanceOnFirstUse: a ready event already in the socket when the
// ready timeout has passed is adopted, not replayed elsewhere. A read whose
// deadline has passed fails before it looks at the socket, so only the last
// look finds the event.
func TestLastChanceOnFirstUse(t *testing.T) {
	open, written := make(gate), make(chan struct{})
	e := newEnv(t, func(fb *fakeBroker, c net.Conn, hf *pb.Frame, _ *pb.Hello) {
		write(c, handoffReply(fb.t, hf, fb.pipeOf()))
		open.wait(fb.t)
		write(c, goodReady(fb.t), []byte("A>"))
		close(written)
		fb.adopted <- drain(c)
	})
	c, err := Dial(t.Context(), "echo", Socket(e.fb.sock), ReadyTimeout(time.Nanosecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	close(open)
	<-written // a local write is in our receive buffer when it returns
	if r := c.Route(); r != Handoff {
		t.Fatalf("route %v, want the handoff whose ready event was already here", r)
	}
	if got := readString(t, c, 2); got != "A>" {
		t.Fatalf("read %q, want A>", got)
	}
	endWrites(t, c)
	e.fb.recvAdopted(t)
	e.rec.assertUntouched(t)
}

// TestRehelloWaitsForSuccessor: when the fresh Hello after a dead
// backend_pipe meets a broker that is stopping (SHUTTING_DOWN, retry after
// a moment), the client waits as asked and asks again, and is served by
// the backend the next broker names: the reconnect route still works.
func TestRehelloWaitsForSuccessor(t *testing.T) {
	for _, awaitReady := range []bool{true, false} {
		t.Run(map[bool]string{true: "in Dial", false: "on first use"}[awaitReady], func(t *testing.T) {
			dead := endpointIn(newDir(t), "dead")
			const retry = 50 * time.Millisecond
			var refused atomic.Int64 // unix nanoseconds of the SHUTTING_DOWN answer
			var e *testEnv
			e = newEnv(t, func(fb *fakeBroker, c net.Conn, hf *pb.Frame, h *pb.Hello) {
				switch fb.hellos.Load() {
				case 1:
					write(c, handoffReply(fb.t, hf, dead))
				case 2:
					refused.Store(time.Now().UnixNano())
					r := wire.NewRefused(pb.ErrorCode_ERROR_SHUTTING_DOWN, "stopping", retry, nil)
					write(c, replyBytes(fb.t, hf, &pb.HelloReply{Result: &pb.HelloReply_Refused{Refused: r}}))
				default:
					if waited := time.Since(time.Unix(0, refused.Load())); waited < retry {
						fb.t.Errorf("asked again %s after SHUTTING_DOWN, want at least its retry_after %s", waited, retry)
					}
					write(c, replyBytes(fb.t, hf, negotiated(e.rec.path, nil, 0)))
				}
			})
			opts := []Option{Socket(e.fb.sock), EarlyData([]byte("REQ1"))}
			if awaitReady {
				opts = append(opts, AwaitReady())
			}
			c, err := Dial(t.Context(), "echo", opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := readString(t, c, 2); got != "B>" {
				t.Fatalf("read %q, want the live backend's B>", got)
			}
			if c.Route() != Reconnect || c.BackendPipe() != e.rec.path {
				t.Fatalf("route %v via %q", c.Route(), c.BackendPipe())
			}
			endWrites(t, c)
			if rec := e.rec.next(t); rec.data != "REQ1" {
				t.Fatalf("backend got %q, want the early data once", rec.data)
			}
			if n := e.fb.hellos.Load(); n != 3 {
				t.Fatalf("%d Hellos, want 3", n)
			}
		})
	}
}

// TestFallbackFailureErrors: when neither the handoff, nor backend_pipe,
// nor a fresh Hello reaches a backend, Dial (AwaitReady) returns the
// broker's refusal of the fresh Hello, and a Conn settling on first use
// returns an error matching ErrBackendUnavailable, on every later call too.
func TestFallbackFailureErrors(t *testing.T) {
	for _, awaitReady := range []bool{true, false} {
		t.Run(map[bool]string{true: "in Dial", false: "on first use"}[awaitReady], func(t *testing.T) {
			dead := endpointIn(newDir(t), "dead")
			e := newEnv(t, func(fb *fakeBroker, c net.Conn, hf *pb.Frame, _ *pb.Hello) {
				if fb.hellos.Load() == 1 {
					write(c, handoffReply(fb.t, hf, dead))
					return
				}
				r := wire.NewRefused(pb.ErrorCode_ERROR_SHUTTING_DOWN, "stopping", 0, nil)
				write(c, replyBytes(fb.t, hf, &pb.HelloReply{Result: &pb.HelloReply_Refused{Refused: r}}))
			})
			opts := []Option{Socket(e.fb.sock), EarlyData([]byte("REQ1"))}
			if awaitReady {
				opts = append(opts, AwaitReady())
			}
			c, err := Dial(t.Context(), "echo", opts...)
			if awaitReady {
				if c != nil || !errors.Is(err, ErrShuttingDown) {
					t.Fatalf("Dial: %v, %v; want the refusal of the fresh Hello", c, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for range 2 {
				if _, err := c.Read(make([]byte, 1)); !errors.Is(err, ErrBackendUnavailable) || !errors.Is(err, ErrShuttingDown) {
					t.Fatalf("Read: %v, want ErrBackendUnavailable wrapping the refusal", err)
				}
			}
			if c.Route() != Reconnect {
				t.Fatalf("route %v, want reconnect (the fallback was taken)", c.Route())
			}
		})
	}
}
