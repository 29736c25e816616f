//go:build linux || darwin

package backend

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portier/portier/internal/fdcount"
	"github.com/portier/portier/internal/spawnenv"
	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// exchange checks that a and b are the two ends of one working connection,
// including a half-close from a.
func exchange(t *testing.T, a, b net.Conn) {
	t.Helper()
	_ = a.SetDeadline(time.Now().Add(waitTimeout))
	_ = b.SetDeadline(time.Now().Add(waitTimeout))
	if _, err := a.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	var buf [4]byte
	if _, err := io.ReadFull(b, buf[:]); err != nil || string(buf[:]) != "ping" {
		t.Fatalf("read %q, %v; want ping", buf[:], err)
	}
	if _, err := b.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(a, buf[:]); err != nil || string(buf[:]) != "pong" {
		t.Fatalf("read %q, %v; want pong", buf[:], err)
	}
	if err := a.(*net.UnixConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Read(buf[:]); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("after CloseWrite: read %d bytes, %v; want EOF", n, err)
	}
}

// expectAcceptClosed checks that Accept reports a closed listener.
func expectAcceptClosed(t *testing.T, l net.Listener) {
	t.Helper()
	c, err := l.Accept()
	if !errors.Is(err, net.ErrClosed) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("Accept after close: %v, %v; want net.ErrClosed", c, err)
	}
}

func expectNoFile(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s still exists (%v) after the listener closed", path, err)
	}
}

func TestHandoffAndDirectConnections(t *testing.T) {
	fdcount.Check(t)
	fb := newFakeBroker(t)
	fb.setEnv()
	l, p := listenUnder(t, fb)
	if got := l.Addr().String(); got != fb.endpoint {
		t.Errorf("Addr() = %q, want the broker-assigned endpoint %q", got, fb.endpoint)
	}
	if s := l.String(); !strings.Contains(s, "echo@1.2.3") {
		t.Errorf("String() = %q, want it to name echo@1.2.3", s)
	}

	// A handed-off connection: the client sees the ready event, then talks
	// to whatever Accept returned, and the broker gets an accepting ACK.
	client, fd := clientPair(t)
	tok := newToken()
	p.offer(handoffOffer(t, 7, tok), fd)
	readReady(t, client, 7, tok)
	exchange(t, client, accept(t, l))
	ack := p.readAck()
	if !ack.GetAccepted() || ack.GetCorrelationId() != 7 || !bytes.Equal(ack.GetToken(), tok) || ack.GetErrorDetail() != "" {
		t.Errorf("ACK %v, want accepted for connection 7 with the offer's token", ack)
	}

	// A direct connection (reconnect route) comes out of the same Accept.
	d, err := net.Dial("unix", fb.endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	exchange(t, d, accept(t, l))

	if err := l.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	p.expectUnregister()
	expectAcceptClosed(t, l)
	expectNoFile(t, fb.endpoint)
	goleak.VerifyNone(t)
}

// TestReadyEventBeforeAccept checks the early-data guarantee: by the time
// Accept returns a handed-off connection the whole ready event is already in
// the client's receive buffer, and bytes the client pipelined before the
// handoff are the first the application reads.
func TestReadyEventBeforeAccept(t *testing.T) {
	fdcount.Check(t)
	fb := newFakeBroker(t)
	fb.setEnv()
	l, p := listenUnder(t, fb)

	client, fd := clientPair(t)
	if _, err := client.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	tok := newToken()
	p.offer(handoffOffer(t, 42, tok), fd)
	c := accept(t, l)

	// Peek without waiting: the event must be complete now.
	var buf [256]byte
	var n int
	err := fdWith(client, func(fd int) error {
		var rerr error
		n, _, rerr = unix.Recvfrom(fd, buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return rerr
	})
	if err != nil {
		t.Fatalf("ready event not in the client's buffer when Accept returned: %v", err)
	}
	if n < wire.HeaderLen {
		t.Fatalf("only %d bytes in the client's buffer when Accept returned", n)
	}
	body, err := wire.ParseHeader(buf[:wire.HeaderLen], wire.MaxBody)
	if err != nil {
		t.Fatal(err)
	}
	if n != wire.HeaderLen+body {
		t.Fatalf("%d bytes in the client's buffer when Accept returned, want the whole %d-byte event", n, wire.HeaderLen+body)
	}
	readReady(t, client, 42, tok)

	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	var early [5]byte
	if _, err := io.ReadFull(c, early[:]); err != nil || string(early[:]) != "early" {
		t.Fatalf("application read %q, %v; want the pipelined bytes \"early\"", early[:], err)
	}
	if !p.readAck().GetAccepted() {
		t.Error("offer not accepted")
	}
}

// fdWith runs fn on c's descriptor without duplicating it.
func fdWith(c *net.UnixConn, fn func(fd int) error) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// TestOfferRejected: every malformed or misdirected offer is refused with a
// rejecting ACK, its descriptor is closed without a byte written to the
// client (who then takes the reconnect route), and the listener carries on.
func TestOfferRejected(t *testing.T) {
	fdcount.Check(t)
	fb := newFakeBroker(t)
	fb.setEnv()
	l, p := listenUnder(t, fb)

	type offerCase struct {
		name      string
		frame     func() *pb.Frame
		echoToken bool // the offer decodes, so its token can be echoed
	}
	tok := newToken()
	cases := []offerCase{
		{"short token", func() *pb.Frame { return handoffOffer(t, 10, tok[:15]) }, false},
		{"long token", func() *pb.Frame { return handoffOffer(t, 10, append(tok, 0)) }, false},
		{"no token", func() *pb.Frame { return handoffOffer(t, 10, nil) }, false},
		{"other service", func() *pb.Frame {
			f, _ := wire.NewRequest(wire.ProtocolHandoff, 10, &pb.HandoffOffer{Token: tok, ServiceName: "other", CorrelationId: 10})
			return f
		}, true},
		{"correlation differs from request id", func() *pb.Frame {
			f, _ := wire.NewRequest(wire.ProtocolHandoff, 10, &pb.HandoffOffer{Token: tok, ServiceName: "echo", CorrelationId: 11})
			return f
		}, true},
		{"event instead of request", func() *pb.Frame {
			f := handoffOffer(t, 10, tok)
			f.Kind = pb.FrameKind_FRAME_KIND_EVENT
			return f
		}, false},
		{"expired", func() *pb.Frame {
			// The client may already have replayed its bytes elsewhere.
			f := handoffOffer(t, 10, tok)
			f.DeadlineUnixMs = uint64(time.Now().Add(-time.Second).UnixMilli())
			return f
		}, true},
		{"malformed payload", func() *pb.Frame {
			f := handoffOffer(t, 10, tok)
			f.Payload = []byte{0xff, 0xff, 0xff}
			return f
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			client, fd := clientPair(t)
			p.offer(tc.frame(), fd)
			ack := p.readAck()
			if ack.GetAccepted() || ack.GetErrorDetail() == "" || ack.GetCorrelationId() != 10 {
				t.Errorf("ACK %v, want a rejection of connection 10 with a reason", ack)
			}
			if tc.echoToken && !bytes.Equal(ack.GetToken(), tok) {
				t.Errorf("rejection carries token %x, want the offer's", ack.GetToken())
			}
			expectClosed(t, client)
		})
	}

	t.Run("no descriptor", func(t *testing.T) {
		p.write(handoffOffer(t, 12, tok))
		if ack := p.readAck(); ack.GetAccepted() || !strings.Contains(ack.GetErrorDetail(), "descriptor") {
			t.Errorf("ACK %v, want a rejection naming the missing descriptor", ack)
		}
	})

	// Descriptors on frames that are not offers are closed, not leaked.
	t.Run("descriptor on a control frame", func(t *testing.T) {
		client, fd := clientPair(t)
		f, err := wire.NewRequest(wire.ProtocolBackendControl, 0, &pb.BackendControl{Msg: &pb.BackendControl_RegisterReply{RegisterReply: &pb.RegisterReply{Accepted: true}}})
		if err != nil {
			t.Fatal(err)
		}
		p.offer(f, fd)
		expectClosed(t, client)
	})
	t.Run("descriptor on a foreign protocol", func(t *testing.T) {
		client, fd := clientPair(t)
		f, err := wire.NewRequest(0x7001, 3, &pb.HandoffOffer{Token: tok, ServiceName: "echo", CorrelationId: 3})
		if err != nil {
			t.Fatal(err)
		}
		p.offer(f, fd)
		expectClosed(t, client)
	})

	// Still serving offers (one with a deadline to spare is adopted).
	client, fd := clientPair(t)
	f := handoffOffer(t, 13, tok)
	f.DeadlineUnixMs = uint64(time.Now().Add(time.Minute).UnixMilli())
	p.offer(f, fd)
	readReady(t, client, 13, tok)
	exchange(t, client, accept(t, l))
	if ack := p.readAck(); !ack.GetAccepted() || ack.GetCorrelationId() != 13 {
		t.Errorf("ACK %v, want connection 13 accepted", ack)
	}
	fb.logs.checkNoSecrets(t, tok)
}

// TestAcceptQueueBound: with QueueSize(n) and n handed-off connections
// waiting for Accept, the next offer is rejected at once and its descriptor
// closed; once Accept takes one, offers are accepted again.
func TestAcceptQueueBound(t *testing.T) {
	fdcount.Check(t)
	fb := newFakeBroker(t)
	fb.setEnv()
	const n = 2
	l, p := listenUnder(t, fb, QueueSize(n))

	clients := make([]*net.UnixConn, n)
	toks := make([][]byte, n)
	for i := range n {
		var fd int
		clients[i], fd = clientPair(t)
		toks[i] = newToken()
		p.offer(handoffOffer(t, uint64(i+1), toks[i]), fd)
	}
	over, fd := clientPair(t)
	p.offer(handoffOffer(t, 99, newToken()), fd)
	acks := p.readAcks(n + 1)
	for i := range n {
		if a := acks[uint64(i+1)]; !a.GetAccepted() {
			t.Errorf("offer %d within the queue bound: ACK %v, want accepted", i+1, a)
		}
		readReady(t, clients[i], uint64(i+1), toks[i])
	}
	if a := acks[99]; a.GetAccepted() || !strings.Contains(a.GetErrorDetail(), "queue") {
		t.Errorf("offer over the queue bound: ACK %v, want a queue-full rejection", a)
	}
	expectClosed(t, over)

	// Accept frees a slot: the next offer is adopted.
	c := accept(t, l)
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	next, fd := clientPair(t)
	tok := newToken()
	p.offer(handoffOffer(t, 100, tok), fd)
	readReady(t, next, 100, tok)
	if a := p.readAck(); !a.GetAccepted() || a.GetCorrelationId() != 100 {
		t.Errorf("offer after Accept freed a slot: ACK %v, want accepted", a)
	}
}

// TestQuiesce: the broker's Quiesce stops the listener gracefully. The
// broker hears Unregister and the endpoint is gone, but nothing in
// progress is cut: a connection the program is serving keeps working, a
// handed-off connection Accept has not returned yet is still returned
// (its client adopted it), and only then does Accept report
// net.ErrClosed. Shutdown waits for both to be closed.
func TestQuiesce(t *testing.T) {
	fdcount.Check(t)
	fb := newFakeBroker(t)
	fb.setEnv()
	l, p := listenUnder(t, fb)

	// A direct connection the program is serving when the quiesce comes.
	d, err := net.Dial("unix", fb.endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	serving := accept(t, l)

	client, fd := clientPair(t)
	tok := newToken()
	p.offer(handoffOffer(t, 5, tok), fd)
	if !p.readAck().GetAccepted() {
		t.Fatal("offer not accepted")
	}
	p.quiesce()
	p.expectUnregister()
	readReady(t, client, 5, tok)
	queued := accept(t, l) // handed off before the quiesce: still Accept's
	expectAcceptClosed(t, l)
	expectNoFile(t, fb.endpoint)
	if n := l.LiveConnections(); n != 2 {
		t.Errorf("LiveConnections = %d after the quiesce, want 2", n)
	}
	// Both still work after the quiesce.
	exchange(t, client, queued)
	exchange(t, d, serving)

	// Shutdown waits for them: with a context that has ended it reports
	// that, with the connections still open.
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Shutdown(ended); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown with 2 live connections and an ended context = %v, want context.Canceled", err)
	}
	shut := make(chan error, 1)
	go func() { shut <- l.Shutdown(context.Background()) }()
	queued.Close()
	serving.Close()
	select {
	case err := <-shut:
		if err != nil {
			t.Errorf("Shutdown = %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Shutdown did not return once the connections were closed")
	}
	if err := l.Close(); err != nil {
		t.Errorf("Close after quiesce: %v", err)
	}
	goleak.VerifyNone(t)
}

// TestCloseClosesQueued: Close (unlike a quiesce or Shutdown) closes the
// handed-off connections Accept has not returned, after their ready event.
func TestCloseClosesQueued(t *testing.T) {
	fdcount.Check(t)
	fb := newFakeBroker(t)
	fb.setEnv()
	l, p := listenUnder(t, fb)
	client, fd := clientPair(t)
	tok := newToken()
	p.offer(handoffOffer(t, 6, tok), fd)
	if !p.readAck().GetAccepted() {
		t.Fatal("offer not accepted")
	}
	if err := l.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	p.expectUnregister()
	readReady(t, client, 6, tok)
	expectClosed(t, client)
	expectAcceptClosed(t, l)
	if n := l.LiveConnections(); n != 0 {
		t.Errorf("LiveConnections = %d after Close closed the queue, want 0", n)
	}
	goleak.VerifyNone(t)
}

// TestSpawnSecretNotInherited: once Listen has read the spawn secret it is
// gone from the process environment, so a program the backend starts (a
// real child process here) does not inherit it.
func TestSpawnSecretNotInherited(t *testing.T) {
	fdcount.Check(t)
	fb := newFakeBroker(t)
	fb.setEnv()
	if _, ok := os.LookupEnv(spawnenv.SpawnSecret); !ok {
		t.Fatal("the fake broker's environment lacks the secret")
	}
	l, p := listenUnder(t, fb)
	if v, ok := os.LookupEnv(spawnenv.SpawnSecret); ok {
		t.Fatalf("after Listen, %s is still set (%q)", spawnenv.SpawnSecret, v)
	}
	cmd := exec.Command(os.Args[0], hex.EncodeToString(fb.secret))
	cmd.Env = append(os.Environ(), helperEnv+"=environ")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != "named=false valued=false" {
		t.Fatalf("child of the backend: %s, want the secret neither by name nor by value", got)
	}
	// The listener keeps its own copy for re-registrations
	// (TestReRegisterAfterControlDrop: the broker checks the secret).
	l.Close()
	p.expectUnregister()
}

// TestReRegisterAfterControlDrop: when the broker's end of the control
// connection goes away (a broker restart), the listener keeps serving direct
// connections and registers again, and offers on the new connection work.
func TestReRegisterAfterControlDrop(t *testing.T) {
	fdcount.Check(t)
	fb := newFakeBroker(t)
	fb.setEnv()
	l, p := listenUnder(t, fb)
	p.conn.Close()

	// Between brokers the backend's own endpoint still serves.
	d, err := net.Dial("unix", fb.endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	exchange(t, d, accept(t, l))

	p2 := fb.accept() // checks the Register carries the same identity
	p2.reply(&pb.RegisterReply{Accepted: true})
	client, fd := clientPair(t)
	tok := newToken()
	p2.offer(handoffOffer(t, 8, tok), fd)
	readReady(t, client, 8, tok)
	exchange(t, client, accept(t, l))
	if a := p2.readAck(); !a.GetAccepted() {
		t.Errorf("ACK %v after re-registration, want accepted", a)
	}

	l.Close()
	p2.expectUnregister()
	goleak.VerifyNone(t)
}

// TestReRegisterRefused: a restarted broker that does not vouch for this
// process refuses it, and the listener closes itself so the program exits.
func TestReRegisterRefused(t *testing.T) {
	fdcount.Check(t)
	fb := newFakeBroker(t)
	fb.setEnv()
	l, p := listenUnder(t, fb)
	p.conn.Close()
	p2 := fb.accept()
	p2.reply(&pb.RegisterReply{Code: pb.ErrorCode_ERROR_PEER_REJECTED, Reason: "not started by this broker"})
	p2.expectEOF()
	expectAcceptClosed(t, l)
	l.Close() // returns once the listener's own Close has finished
	expectNoFile(t, fb.endpoint)
	goleak.VerifyNone(t)
}

// TestCloseRightAfterListen: Close right after Listen returns, before the
// control loop has taken over the registered connection, unregisters and
// returns (it used to miss the connection and wait forever on its reader).
func TestCloseRightAfterListen(t *testing.T) {
	fdcount.Check(t)
	fb := newFakeBroker(t)
	for range 10 {
		fb.setEnv() // each Listen takes the spawn secret out of the environment
		l, p := listenUnder(t, fb)
		closed := make(chan error, 1)
		go func() { closed <- l.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				t.Errorf("Close: %v", err)
			}
		case <-time.After(waitTimeout):
			p.conn.Close()
			<-closed
			t.Fatal("Close right after Listen did not return")
		}
		p.expectUnregister()
	}
	goleak.VerifyNone(t)
}

// TestCloseDuringReRegistration: Close while the listener re-registers with
// a broker that answers only after Close began must still return, and must
// not leave the new control connection open.
func TestCloseDuringReRegistration(t *testing.T) {
	fdcount.Check(t)
	fb := newFakeBroker(t)
	fb.setEnv()
	l, p := listenUnder(t, fb)
	p.conn.Close()
	p2 := fb.accept() // the backend now waits for the RegisterReply

	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	// Close removes the endpoint before it looks for a control connection;
	// answer the registration only after that. Close may have ended the
	// registration already, so the answer may find the connection closed.
	waitGone(t, fb.endpoint)
	if f, err := wire.NewResponse(p2.regFrame, wire.ProtocolBackendControl,
		&pb.BackendControl{Msg: &pb.BackendControl_RegisterReply{RegisterReply: &pb.RegisterReply{Accepted: true}}}); err == nil {
		_ = p2.conn.SetWriteDeadline(time.Now().Add(waitTimeout))
		_ = wire.WriteFrame(p2.conn, f)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(waitTimeout):
		p2.conn.Close() // unblocks a listener stuck on the control connection
		<-closed
		t.Fatal("Close did not return while a re-registration completed")
	}
	// The connection registered during Close is not kept open.
	if f, err := p2.read(); err == nil {
		m, err := wire.DecodeBackendControl(f.GetPayload())
		if f.GetPayloadProtocol() != wire.ProtocolBackendControl || err != nil || m.GetUnregister() == nil {
			t.Fatalf("got %v on the control connection, want Unregister or EOF", f)
		}
		p2.expectEOF()
	} else if !errors.Is(err, io.EOF) {
		t.Fatalf("control connection registered during Close: %v, want EOF", err)
	}
	goleak.VerifyNone(t)
}

// waitGone polls (bounded) until path no longer exists: the listener gives
// no other signal that its Close got that far.
func waitGone(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still exists", path)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestCloseWhileBrokerSilent: Close does not wait out the registration
// timeout while a re-registration waits on a broker that never answers.
func TestCloseWhileBrokerSilent(t *testing.T) {
	fdcount.Check(t)
	fb := newFakeBroker(t)
	fb.setEnv()
	l, p := listenUnder(t, fb, RegisterTimeout(time.Hour))
	p.conn.Close()
	p2 := fb.accept() // never answered
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	select {
	case <-closed:
	case <-time.After(waitTimeout):
		p2.conn.Close()
		<-closed
		t.Fatal("Close waited on a broker that never answered the re-registration")
	}
	p2.expectEOF()
	goleak.VerifyNone(t)
}

func TestRegistrationRefused(t *testing.T) {
	fdcount.Check(t)
	fb := newFakeBroker(t)
	fb.setEnv()
	errc := make(chan error, 1)
	go func() {
		l, err := Listen(context.Background())
		if err == nil {
			l.Close()
		}
		errc <- err
	}()
	p := fb.accept()
	p.reply(&pb.RegisterReply{Code: pb.ErrorCode_ERROR_PEER_REJECTED, Reason: "wrong spawn secret"})
	err := <-errc
	if !errors.Is(err, ErrRegistrationRefused) {
		t.Fatalf("Listen: %v, want ErrRegistrationRefused", err)
	}
	var re *RegistrationError
	if !errors.As(err, &re) || re.Code != wire.CodePeerRejected || re.Reason != "wrong spawn secret" {
		t.Fatalf("Listen: %#v, want *RegistrationError with the broker's code and reason", err)
	}
	if !strings.Contains(err.Error(), "wrong spawn secret") {
		t.Errorf("error %q does not carry the broker's reason", err)
	}
	p.expectEOF()
	expectNoFile(t, fb.endpoint)
	goleak.VerifyNone(t)
}

// TestRegistrationFailures: Listen fails cleanly, and within its bounds,
// when the broker is absent, silent or answers with something else.
func TestRegistrationFailures(t *testing.T) {
	t.Run("no broker", func(t *testing.T) {
		fdcount.Check(t)
		fb := newFakeBroker(t)
		fb.setEnv()
		fb.ln.Close()
		l, err := Listen(context.Background())
		if err == nil {
			l.Close()
			t.Fatal("Listen succeeded without a broker")
		}
		expectNoFile(t, fb.endpoint)
	})
	t.Run("silent broker", func(t *testing.T) {
		fdcount.Check(t)
		fb := newFakeBroker(t)
		fb.setEnv()
		errc := make(chan error, 1)
		go func() {
			_, err := Listen(context.Background(), RegisterTimeout(50*time.Millisecond))
			errc <- err
		}()
		p := fb.accept()
		if err := <-errc; !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Listen against a silent broker: %v, want a deadline error", err)
		}
		p.expectEOF()
		expectNoFile(t, fb.endpoint)
	})
	t.Run("canceled context", func(t *testing.T) {
		fdcount.Check(t)
		fb := newFakeBroker(t)
		fb.setEnv()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if l, err := Listen(ctx); err == nil {
			l.Close()
			t.Fatal("Listen with a canceled context succeeded")
		}
		expectNoFile(t, fb.endpoint)
	})
	t.Run("wrong reply", func(t *testing.T) {
		fdcount.Check(t)
		fb := newFakeBroker(t)
		fb.setEnv()
		errc := make(chan error, 1)
		go func() {
			_, err := Listen(context.Background())
			errc <- err
		}()
		p := fb.accept()
		f, err := wire.NewResponse(p.regFrame, wire.ProtocolBackendControl, &pb.BackendControl{Msg: &pb.BackendControl_Quiesce{Quiesce: &pb.Quiesce{}}})
		if err != nil {
			t.Fatal(err)
		}
		p.write(f)
		if err := <-errc; err == nil || errors.Is(err, ErrRegistrationRefused) {
			t.Fatalf("Listen after a non-RegisterReply: %v, want a protocol error", err)
		}
		p.expectEOF()
	})
	t.Run("wrong protocol", func(t *testing.T) {
		fdcount.Check(t)
		fb := newFakeBroker(t)
		fb.setEnv()
		errc := make(chan error, 1)
		go func() {
			_, err := Listen(context.Background())
			errc <- err
		}()
		p := fb.accept()
		f, err := wire.NewResponse(p.regFrame, wire.ProtocolControl, &pb.HelloReply{})
		if err != nil {
			t.Fatal(err)
		}
		p.write(f)
		if err := <-errc; err == nil || !strings.Contains(err.Error(), "payload protocol") {
			t.Fatalf("Listen after a HelloReply: %v, want a payload-protocol error", err)
		}
		p.expectEOF()
	})
}

func TestNoHandoffOption(t *testing.T) {
	fb := newFakeBroker(t)
	fb.setEnv()
	errc := make(chan error, 1)
	go func() {
		l, err := Listen(context.Background(), NoHandoff())
		if err == nil {
			err = l.Close()
		}
		errc <- err
	}()
	_ = fb.ln.SetDeadline(time.Now().Add(waitTimeout))
	c, err := fb.ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(waitTimeout))
	f, err := wire.ReadFrame(c, wire.MaxBody)
	if err != nil {
		t.Fatal(err)
	}
	p := &ctrlPeer{t: t, conn: c, regFrame: f}
	m, err := wire.DecodeBackendControl(f.GetPayload())
	if err != nil || m.GetRegister() == nil {
		t.Fatalf("first frame %v (%v), want Register", m, err)
	}
	if m.GetRegister().GetHandoffCapable() {
		t.Error("NoHandoff: the registration claims the handoff capability")
	}
	p.reply(&pb.RegisterReply{Accepted: true})
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestStandalone: without a broker environment the listener serves the
// Address endpoint, and Close removes it.
func TestStandalone(t *testing.T) {
	fdcount.Check(t)
	clearBrokerEnv(t)
	dir, err := os.MkdirTemp("", "bk")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "echo.sock")
	l, err := Listen(context.Background(), Address(path))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := l.Addr().String(); got != path {
		t.Errorf("Addr() = %q, want %q", got, path)
	}
	if s := l.String(); !strings.Contains(s, "standalone") {
		t.Errorf("String() = %q, want it to say standalone", s)
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("endpoint %v, %v; want a 0600 socket", fi, err)
	}
	for range 3 {
		d, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		exchange(t, d, accept(t, l))
		d.Close()
	}
	if err := l.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	expectAcceptClosed(t, l)
	expectNoFile(t, path)
	goleak.VerifyNone(t)
}

// TestDirectFromOtherUserRefused: a direct connection from another uid is
// closed unserved (the endpoint's 0600 mode normally keeps such peers out;
// here the test opens it up to reach the peer check behind it).
func TestDirectFromOtherUserRefused(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a helper process as another user")
	}
	uid, gid := 65534, 65534
	if u, err := user.Lookup("nobody"); err == nil {
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	clearBrokerEnv(t)
	dir, err := os.MkdirTemp("", "bk")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	// The test binary's own directory is private to root: run a copy.
	exe := filepath.Join(dir, "helper.test")
	copyExecutable(t, exe)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "echo.sock")
	logs := new(logBuffer)
	l, err := Listen(context.Background(), Address(path), Logger(slog.New(slog.NewTextHandler(logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(exe, path)
	cmd.Env = append(os.Environ(), helperEnv+"=dial", "GORACE=atexit_sleep_ms=0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper as uid %d: %v\n%s", uid, err, stderr.Bytes())
	}
	if got := strings.TrimSpace(string(out)); got != "eof" {
		t.Fatalf("connection from uid %d: helper saw %q, want it closed unserved (eof)", uid, got)
	}
	if s := logs.String(); !strings.Contains(s, "peer is not this user") || !strings.Contains(s, fmt.Sprintf("peer_uid=%d", uid)) {
		t.Fatalf("the refusal was not logged with the peer's uid:\n%s", s)
	}

	// The refused connection never reached Accept: the next one it returns
	// is ours.
	d, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	exchange(t, d, accept(t, l))
}

func copyExecutable(t *testing.T, dst string) {
	t.Helper()
	src, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestOfferForGoneClient: a client that hung up before the handoff cannot
// get the ready event; the offer is rejected and its queue slot released.
func TestOfferForGoneClient(t *testing.T) {
	fdcount.Check(t)
	fb := newFakeBroker(t)
	fb.setEnv()
	l, p := listenUnder(t, fb, QueueSize(1))
	gone, fd := clientPair(t)
	gone.Close()
	tok := newToken()
	p.offer(handoffOffer(t, 20, tok), fd)
	if a := p.readAck(); a.GetAccepted() || !strings.Contains(a.GetErrorDetail(), "ready") {
		t.Errorf("ACK %v, want a rejection naming the ready event", a)
	}
	// The single slot is free again.
	client, fd := clientPair(t)
	p.offer(handoffOffer(t, 21, tok), fd)
	readReady(t, client, 21, tok)
	exchange(t, client, accept(t, l))
	if a := p.readAck(); !a.GetAccepted() {
		t.Errorf("ACK %v, want accepted", a)
	}
	fb.logs.checkNoSecrets(t, tok)
}

// TestReadyEventPartialWrite: when the client's socket cannot take the
// whole ready event at once, the backend finishes writing it (under a
// deadline) before the connection reaches Accept.
func TestReadyEventPartialWrite(t *testing.T) {
	fdcount.Check(t)
	fb := newFakeBroker(t)
	fb.setEnv()
	l, p := listenUnder(t, fb)
	client, fd := clientPair(t)
	// Fill the socket towards the client until it takes nothing more, not
	// even one byte.
	junk := 0
	for _, size := range []int{4096, 1} {
		chunk := make([]byte, size)
		for {
			n, err := unix.Write(fd, chunk)
			if n > 0 {
				junk += n
			}
			if errors.Is(err, unix.EAGAIN) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	tok := newToken()
	p.offer(handoffOffer(t, 30, tok), fd)
	// The backend waits for room; reading the junk makes it.
	_ = client.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := io.CopyN(io.Discard, client, int64(junk)); err != nil {
		t.Fatal(err)
	}
	readReady(t, client, 30, tok)
	exchange(t, client, accept(t, l))
	if a := p.readAck(); !a.GetAccepted() {
		t.Errorf("ACK %v, want accepted", a)
	}
}

// TestOfferWithTwoDescriptors: an offer that carries more than one
// descriptor is rejected and every descriptor it carried is closed.
func TestOfferWithTwoDescriptors(t *testing.T) {
	fdcount.Check(t)
	fb := newFakeBroker(t)
	fb.setEnv()
	l, p := listenUnder(t, fb)
	c1, fd1 := clientPair(t)
	c2, fd2 := clientPair(t)
	tok := newToken()
	b, err := wire.EncodeFrame(handoffOffer(t, 40, tok))
	if err != nil {
		t.Fatal(err)
	}
	if err := fdWith(p.conn, func(s int) error {
		return unix.Sendmsg(s, b, unix.UnixRights(fd1, fd2), nil, 0)
	}); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd1)
	unix.Close(fd2)
	if a := p.readAck(); a.GetAccepted() || a.GetCorrelationId() != 40 || a.GetErrorDetail() == "" {
		t.Errorf("ACK %v, want a rejection of connection 40", a)
	}
	expectClosed(t, c1)
	expectClosed(t, c2)

	// The control connection still works.
	client, fd := clientPair(t)
	p.offer(handoffOffer(t, 41, tok), fd)
	readReady(t, client, 41, tok)
	exchange(t, client, accept(t, l))
	if a := p.readAck(); !a.GetAccepted() {
		t.Errorf("ACK %v, want accepted", a)
	}
}

// TestMalformedControlMessageIgnored: a control message that does not
// decode is ignored, not fatal to the control connection.
func TestMalformedControlMessageIgnored(t *testing.T) {
	fdcount.Check(t)
	fb := newFakeBroker(t)
	fb.setEnv()
	l, p := listenUnder(t, fb)
	p.write(&pb.Frame{EnvelopeVersion: wire.EnvelopeVersion, PayloadProtocol: wire.ProtocolBackendControl, Payload: []byte{0xff, 0xff, 0xff}})
	client, fd := clientPair(t)
	tok := newToken()
	p.offer(handoffOffer(t, 50, tok), fd)
	readReady(t, client, 50, tok)
	exchange(t, client, accept(t, l))
	if a := p.readAck(); !a.GetAccepted() {
		t.Errorf("ACK %v, want accepted", a)
	}
}

// TestBadFramingDropsControl: a control stream that stops being framed is
// dropped, and the listener registers again on a fresh connection.
func TestBadFramingDropsControl(t *testing.T) {
	fdcount.Check(t)
	fb := newFakeBroker(t)
	fb.setEnv()
	l, p := listenUnder(t, fb)
	if _, err := p.conn.Write([]byte{0x02, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	p.expectEOF()
	p2 := fb.accept()
	p2.reply(&pb.RegisterReply{Accepted: true})
	client, fd := clientPair(t)
	tok := newToken()
	p2.offer(handoffOffer(t, 60, tok), fd)
	readReady(t, client, 60, tok)
	exchange(t, client, accept(t, l))
	if a := p2.readAck(); !a.GetAccepted() {
		t.Errorf("ACK %v, want accepted", a)
	}
}

// TestAcceptErrorAfterCloseFinished: Accept reports the closed listener
// only once Close has finished, so a program that exits when Accept fails
// (after the broker asked it to quiesce) has unregistered and removed its
// endpoint by then.
func TestAcceptErrorAfterCloseFinished(t *testing.T) {
	fdcount.Check(t)
	fb := newFakeBroker(t)
	fb.setEnv()
	l, p := listenUnder(t, fb)
	errc := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if c != nil {
			c.Close()
		}
		errc <- err
	}()
	p.quiesce()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after quiesce: %v, want net.ErrClosed", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Accept did not return after quiesce")
	}
	// Nothing here waits for Close: it is done already.
	expectNoFile(t, fb.endpoint)
	p.expectUnregister()
	goleak.VerifyNone(t)
}

// TestOrphanTimeout: a backend whose broker is gone for good stops retrying
// after OrphanTimeout and closes its listener, so the program can exit.
func TestOrphanTimeout(t *testing.T) {
	fdcount.Check(t)
	fb := newFakeBroker(t)
	fb.setEnv()
	l, p := listenUnder(t, fb, OrphanTimeout(100*time.Millisecond))
	fb.ln.Close() // the broker is gone: every re-registration fails to dial
	p.conn.Close()
	expectAcceptClosed(t, l)
	l.Close()
	expectNoFile(t, fb.endpoint)
	if !strings.Contains(fb.logs.String(), "no broker accepted a registration") {
		t.Errorf("no log line explains why the listener closed:\n%s", fb.logs)
	}
	goleak.VerifyNone(t)
}

// TestOfferOfUnusableDescriptorNothingWritten: a descriptor the backend
// cannot turn into a connection is rejected before anything is written on
// it, so the client never sees a ready event from a backend that then
// drops it (a backend that rejects closes its copy without writing, so the
// client sees EOF and reconnects).
func TestOfferOfUnusableDescriptorNothingWritten(t *testing.T) {
	fdcount.Check(t)
	fb := newFakeBroker(t)
	fb.setEnv()
	l, p := listenUnder(t, fb)
	// A datagram socket takes the ready event's write, but is not a stream
	// connection.
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	for _, fd := range fds {
		if err := unix.SetNonblock(fd, true); err != nil {
			t.Fatal(err)
		}
	}
	tok := newToken()
	p.offer(handoffOffer(t, 50, tok), fds[1])
	if a := p.readAck(); a.GetAccepted() {
		t.Fatalf("ACK %v, want a rejection", a)
	}
	buf := make([]byte, 512)
	if n, err := unix.Read(fds[0], buf); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("the client end got %d bytes (%v) from a backend that rejected the offer; want nothing", n, err)
	}
	// Still serving offers.
	client, fd := clientPair(t)
	p.offer(handoffOffer(t, 51, tok), fd)
	readReady(t, client, 51, tok)
	exchange(t, client, accept(t, l))
	if a := p.readAck(); !a.GetAccepted() {
		t.Errorf("ACK %v, want accepted", a)
	}
}

// TestQuiesceServesConnectedClients: clients that connected to the
// endpoint directly (the reconnect route, or the hello-skip fast path,
// which sends no Hello) and were not yet accepted when the broker asked the
// backend to quiesce are still served: Accept returns them before it
// reports the listener closed, each a working connection. A client that
// connects after that finds no endpoint (and asks the broker instead).
func TestQuiesceServesConnectedClients(t *testing.T) {
	fdcount.Check(t)
	fb := newFakeBroker(t)
	fb.setEnv()
	l, p := listenUnder(t, fb)

	// Nobody calls Accept yet: these wait in the listener.
	var clients []net.Conn
	for range 3 {
		d, err := net.Dial("unix", fb.endpoint)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		clients = append(clients, d)
	}
	p.quiesce()
	p.expectUnregister()
	expectNoFile(t, fb.endpoint)
	if _, err := net.Dial("unix", fb.endpoint); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("dial after the quiesce: %v, want ENOENT", err)
	}
	served := make(map[net.Conn]bool)
	for range clients {
		served[accept(t, l)] = true
	}
	expectAcceptClosed(t, l)
	for _, d := range clients {
		_ = d.SetDeadline(time.Now().Add(waitTimeout))
		if _, err := d.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
	}
	for c := range served {
		_ = c.SetDeadline(time.Now().Add(waitTimeout))
		var b [4]byte
		if _, err := io.ReadFull(c, b[:]); err != nil || string(b[:]) != "ping" {
			t.Fatalf("backend read %q, %v", b[:], err)
		}
		c.Close()
	}
	for _, d := range clients {
		if b, err := io.ReadAll(d); err != nil || len(b) != 0 {
			t.Fatalf("client read %q, %v; want EOF (served, then closed)", b, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Errorf("Close after quiesce: %v", err)
	}
}
