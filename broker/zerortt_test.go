//go:build unix

package broker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portier/portier/backend"
	"github.com/portier/portier/client"
	"github.com/portier/portier/handoff"
	"github.com/portier/portier/internal/fdcount"
	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// 0-RTT handoffs seen from the wire: which Hellos get them, what the client
// reads, and that a failed one ends the client's connection without a byte.

func init() { extraRoles["echo-no0rtt"] = runEchoNoZeroRTT }

// runEchoNoZeroRTT is the echo backend of a backend package that does not
// take 0-RTT offers (as one built before they existed).
func runEchoNoZeroRTT(ctx context.Context) int {
	l, err := backend.Listen(ctx, backend.NoZeroRTT())
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo-no0rtt role:", err)
		return 1
	}
	go func() { <-ctx.Done(); l.Close() }()
	serveEcho(l)
	return 0
}

const capsZeroRTT = wire.CapHandlePassing | wire.CapZeroRTT

// rawConn writes a raw Hello for service with capabilities caps, followed
// by early, on a fresh broker connection and returns it with a 10 s
// deadline.
func rawConn(t *testing.T, sock, service string, caps uint64, early string) *net.UnixConn {
	t.Helper()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	hello := rawHello(t, func(h *pb.Hello) { h.ServiceName, h.ClientCapabilities = service, caps }, nil)
	if _, err := c.Write(append(hello, early...)); err != nil {
		t.Fatal(err)
	}
	return c
}

// readNegotiated reads the frame that answers the raw Hello and checks it
// is a Negotiated announcing a handoff, echoing the Hello's request and
// trace context.
func readNegotiated(t *testing.T, c net.Conn) *pb.Negotiated {
	t.Helper()
	f, err := wire.ReadFrame(c, wire.MaxHelloBody)
	if err != nil {
		t.Fatalf("no HelloReply: %v", err)
	}
	checkEcho(t, f)
	neg := helloReplyOf(t, f).GetNegotiated()
	if neg == nil {
		t.Fatalf("reply is not Negotiated: %v", helloReplyOf(t, f))
	}
	if neg.GetServerCapabilities() != wire.CapHandlePassing || len(neg.GetHandlePassedToken()) != wire.TokenLen ||
		neg.GetConnectionId() == 0 || neg.GetBackendPipe() == "" || neg.GetDaemonVersion() != "1.0.0" {
		t.Fatalf("Negotiated %v does not announce a handoff", neg)
	}
	return neg
}

// readReady reads the handoff-ready event that must follow neg.
func readReady(t *testing.T, c net.Conn, neg *pb.Negotiated) {
	t.Helper()
	f, err := wire.ReadFrame(c, wire.MaxHelloBody)
	if err != nil {
		t.Fatalf("no ready event after Negotiated: %v", err)
	}
	ack, err := wire.DecodeHandoffAck(f.GetPayload())
	if err != nil || f.GetKind() != pb.FrameKind_FRAME_KIND_EVENT || f.GetPayloadProtocol() != wire.ProtocolHandoff ||
		f.GetRequestId() != neg.GetConnectionId() || !ack.GetAccepted() ||
		!bytes.Equal(ack.GetToken(), neg.GetHandlePassedToken()) || ack.GetCorrelationId() != neg.GetConnectionId() {
		t.Fatalf("frame after Negotiated is %v (%v), want the ready event of connection %d", f, err, neg.GetConnectionId())
	}
}

// readEcho reads want back from c.
func readEcho(t *testing.T, c net.Conn, want string) {
	t.Helper()
	buf := make([]byte, len(want))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != want {
		t.Fatalf("echo %q, %v; want %q", buf, err, want)
	}
}

// readEOF checks that c ends without another byte: EOF, or ECONNRESET,
// which Linux reports to a client whose early data nobody read when the
// last holder of the other end closes it.
func readEOF(t *testing.T, c net.Conn) {
	t.Helper()
	b, err := io.ReadAll(c)
	if (err != nil && !errors.Is(err, syscall.ECONNRESET)) || len(b) != 0 {
		t.Fatalf("read %q, %v; want the connection to end without a byte", b, err)
	}
}

// readNothing checks that no byte arrives on c for d: a connection still
// held by a backend that never writes.
func readNothing(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	var b [1]byte
	if n, err := c.Read(b[:]); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %q, %v; want nothing (the backend holds the connection)", b[:n], err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
}

// TestZeroRTTHelloServed: a Hello with CAP_PORTIER_0RTT reads what a
// handle-passing client reads, in the same order (Negotiated echoing its
// request, the ready event, then the backend's answer to its early data),
// and the handoff completes.
func TestZeroRTTHelloServed(t *testing.T) {
	h := newHarness(t, nil)
	h.define("echo", "1.0.0", "echo", "")
	h.warm("echo")
	for _, caps := range []uint64{wire.CapHandlePassing, capsZeroRTT} {
		c := rawConn(t, h.sock, "echo", caps, "early")
		neg := readNegotiated(t, c)
		readReady(t, c, neg)
		readEcho(t, c, "early")
		c.Close()
	}
	h.settle()
	if st := h.b.orch.Stats(); st.Completed != 2 || st.TotalFallbacks() != 0 {
		t.Fatalf("stats %+v, want 2 completed handoffs", st)
	}
}

// TestHandlePassingOnlyGetsTodaysSequence: a client with bit 0 alone (a
// running-process v1 client) gets Negotiated from the broker before the
// offer, whatever the backend takes: the 0-RTT-capable backend here never
// writes anything, yet the client has its Negotiated (and so backend_pipe),
// and then no ready event, as before 0-RTT existed (its ready timeout sends
// it to backend_pipe). The same Hello with CAP_PORTIER_0RTT gets no byte at
// all and then the end of the connection at the ACK deadline, even though
// the backend still holds it; and to a backend that does not take 0-RTT
// offers, the broker writes Negotiated itself again.
func TestHandlePassingOnlyGetsTodaysSequence(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Handoff.AckDeadline = 200 * time.Millisecond })
	h.define("echo", "1.0.0", "hold-0rtt", "")
	h.warm("echo")

	c := rawConn(t, h.sock, "echo", wire.CapHandlePassing, "early")
	neg := readNegotiated(t, c)
	h.settle() // the ACK deadline has passed
	readNothing(t, c, 300*time.Millisecond)
	c.Close()
	// Its backend_pipe serves: the reconnect route of a v1 client.
	d, err := net.Dial("unix", neg.GetBackendPipe())
	if err != nil {
		t.Fatal(err)
	}
	echo(t, d, "early")
	d.Close()

	c = rawConn(t, h.sock, "echo", capsZeroRTT, "early")
	readEOF(t, c)
	h.settle()
	if got := h.b.orch.Stats().Fallback(handoff.StageAwaitAck, handoff.ReasonAckTimeout); got != 2 {
		t.Fatalf("await_ack/ack_timeout fallbacks = %d, want 2", got)
	}

	h.define("old", "1.0.0", "hold", "")
	h.warm("old")
	c = rawConn(t, h.sock, "old", capsZeroRTT, "early")
	f, err := wire.ReadFrame(c, wire.MaxHelloBody)
	if err != nil {
		t.Fatalf("a 0-RTT Hello to a backend without 0-RTT got no Negotiated: %v", err)
	}
	if neg := helloReplyOf(t, f).GetNegotiated(); neg.GetServerCapabilities() != wire.CapHandlePassing {
		t.Fatalf("reply %v, want the broker's Negotiated announcing the handoff", neg)
	}
	h.settle()
	readNothing(t, c, 300*time.Millisecond)
}

// TestZeroRTTFailuresEndWithoutAByte: a 0-RTT handoff that fails after the
// offer (the backend rejects it, or dies holding it) ends the client's
// connection without a byte written to it, and the broker's descriptors
// come back.
func TestZeroRTTFailuresEndWithoutAByte(t *testing.T) {
	for _, role := range []string{"reject-0rtt", "die-on-offer-0rtt"} {
		t.Run(role, func(t *testing.T) {
			h := newHarness(t, nil)
			h.define("svc", "1.0.0", role, "")
			h.warm("svc")
			base := fdcount.Count(t)
			c := rawConn(t, h.sock, "svc", capsZeroRTT, "early")
			readEOF(t, c)
			c.Close()
			h.settle()
			if st := h.b.orch.Stats(); st.Completed != 0 || st.TotalFallbacks() != 1 {
				t.Fatalf("stats %+v, want one fallback", st)
			}
			eventually(t, 5*time.Second, "broker fd count back to baseline", func() bool { return fdcount.Count(t) <= base })
		})
	}
}

// TestZeroRTTFailuresClientServed: client.Dial (0-RTT, with early data)
// through every stage at which a 0-RTT handoff can fail after the broker
// decided on it: the offer cannot be delivered, the backend rejects it,
// dies holding it, or holds it without an ACK. Each time Dial returns no
// error, the client is served on the reconnect route, and the early data
// reaches a backend exactly once; the fallback is counted at its stage.
// Each case runs with the hello-skip fast path off, and on as by default
// (its cache empty: the warm-up sent NoHelloSkip), where the fresh Hello
// must still be sent and still be served.
func TestZeroRTTFailuresClientServed(t *testing.T) {
	cases := []zeroRTTFailure{
		{name: "deliver fails", role: "echo", stage: handoff.StageDeliver, reason: handoff.ReasonTransferFailed, failDeliver: true},
		{name: "backend rejects", role: "reject-0rtt", stage: handoff.StageAcknowledge, reason: handoff.ReasonBackendRejected},
		{name: "backend dies holding the offer", role: "die-on-offer-0rtt", stage: handoff.StageAwaitAck, reason: handoff.ReasonTransferFailed},
		{name: "backend never ACKs", role: "hold-0rtt", stage: handoff.StageAwaitAck, reason: handoff.ReasonAckTimeout, ackDeadline: 300 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name+", NoHelloSkip", func(t *testing.T) { tc.run(t) })
		t.Run(tc.name+", default options", func(t *testing.T) { tc.run(t, client.HelloSkip()) })
	}
}

// zeroRTTFailure is one case of TestZeroRTTFailuresClientServed.
type zeroRTTFailure struct {
	name, role  string
	stage       handoff.Stage
	reason      handoff.Reason
	failDeliver bool
	ackDeadline time.Duration
}

func (tc zeroRTTFailure) run(t *testing.T, opts ...client.Option) {
	h := newHarness(t, func(c *Config) {
		if tc.ackDeadline > 0 {
			c.Handoff.AckDeadline = tc.ackDeadline
		}
	})
	h.define("svc", "1.0.0", tc.role, "")
	h.warm("svc")
	base := fdcount.Count(t)
	if tc.failDeliver {
		// The first offer after the warm-up fails to go out.
		var once sync.Once
		testHookDeliver = func() error {
			err := error(nil)
			once.Do(func() { err = errors.New("test: the offer cannot be sent") })
			return err
		}
		t.Cleanup(func() { testHookDeliver = nil })
	}
	c, err := h.dial("svc", append(opts, client.EarlyData([]byte("req-1")))...)
	if err != nil {
		t.Fatalf("Dial: %v (a failed handoff must not be a client error)", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	readEcho(t, c, "req-1")
	if c.Route() != client.Reconnect {
		t.Fatalf("route %s, want reconnect", c.Route())
	}
	// Nothing but what follows: the early data was not delivered twice.
	if _, err := io.WriteString(c, "end"); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(c); err != nil || string(rest) != "end" {
		t.Fatalf("after the early data's echo: %q, %v; want \"end\" alone", rest, err)
	}
	c.Close()
	h.settle()
	st := h.b.orch.Stats()
	if st.Completed != 0 || st.TotalFallbacks() != 1 || st.Fallback(tc.stage, tc.reason) != 1 {
		t.Fatalf("stats %+v, want one fallback at %s/%s", st, tc.stage, tc.reason)
	}
	eventually(t, 10*time.Second, "broker fd count back to baseline", func() bool { return fdcount.Count(t) <= base })
}

func init() { extraRoles["whoami"] = runWhoami }

// runWhoami answers every connection with one line, its version and pid,
// then echoes.
func runWhoami(ctx context.Context) int {
	l, err := backend.Listen(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "whoami role:", err)
		return 1
	}
	go func() { <-ctx.Done(); l.Close() }()
	me := fmt.Sprintf("%s %d\n", os.Getenv("PORTIER_VERSION"), os.Getpid())
	for {
		c, err := l.Accept()
		if err != nil {
			return 0
		}
		go func() {
			defer c.Close()
			if _, err := io.WriteString(c, me); err == nil {
				_, _ = io.Copy(c, c)
			}
		}()
	}
}

// TestFastPathFollowsRetiredBackend: the fast path (the default options)
// reaches the backend directly once it knows it, and a backend the broker
// retires stops being reached that way: after a version bump (noticed by
// the broker without any Hello, since these clients send none) and after
// `portier stop`, every Dial still succeeds, and soon reaches the new
// backend, directly again from the one after it.
func TestFastPathFollowsRetiredBackend(t *testing.T) {
	h := newHarness(t, nil)
	h.define("who", "1.0.0", "whoami", "")
	who := func() (string, client.Route) {
		t.Helper()
		c, err := h.dial("who", client.HelloSkip())
		if err != nil {
			t.Fatalf("Dial: %v (the fast path must never be an error)", err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return line, c.Route()
	}
	first, route := who()
	if route == client.Direct {
		t.Fatalf("first Dial took the direct route")
	}
	if again, route := who(); again != first || route != client.Direct {
		t.Fatalf("second Dial: %q on %s, want %q on the direct route", again, route, first)
	}

	// A new version: the broker retires the old backend within a second
	// (its janitor), and the fast path then asks the broker again.
	h.define("who", "2.0.0", "whoami", "")
	var now string
	eventually(t, 10*time.Second, "a Dial served by 2.0.0", func() bool {
		now, _ = who()
		return strings.HasPrefix(now, "2.0.0 ")
	})
	if again, route := who(); again != now || route != client.Direct {
		t.Fatalf("after the new backend was reached: %q on %s, want %q on the direct route", again, route, now)
	}

	// portier stop: the backend is retired at once (it stops listening as
	// soon as it reads the Quiesce; a Dial before that is still served by
	// it, as any connection made just before a stop).
	if stopped := h.b.sup.stopService("who", "test"); len(stopped) != 1 {
		t.Fatalf("stop retired %d backends, want 1", len(stopped))
	}
	eventually(t, 10*time.Second, "a Dial served by a new backend", func() bool {
		next, _ := who()
		return next != now
	})
}
