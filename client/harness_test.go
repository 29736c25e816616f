package client

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portier/portier/internal/fdcount"
	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// ioTimeout bounds every wait in the tests; it is a hang guard, not a
// speed assertion.
const ioTimeout = 10 * time.Second

// testToken is the handoff token the fake broker issues.
var testToken = bytes.Repeat([]byte{0xA5}, wire.TokenLen)

const testConnID = 7

// script plays the broker's (and, for an adopted connection, the backend's)
// part after the fake broker has read and checked the Hello.
type script func(fb *fakeBroker, c net.Conn, hf *pb.Frame, h *pb.Hello)

// fakeBroker is a scripted broker on a real endpoint (a Unix socket, a
// named pipe on Windows): the fault injector for every client path.
type fakeBroker struct {
	t      testing.TB
	sock   string
	ln     net.Listener
	wg     sync.WaitGroup
	hellos atomic.Int32

	mu        sync.Mutex
	lastHello *pb.Hello
	lastFrame *pb.Frame

	// adopted receives what the "backend" read on an adopted connection.
	adopted chan []byte
	// helloSeen is signalled (non-blocking) after each Hello is read.
	helloSeen chan struct{}
	// pipe is the backend_pipe scripts name (see pipeOf).
	pipe atomic.Value
}

func startBroker(t testing.TB, dir string, s script) *fakeBroker {
	sock := endpointIn(dir, "broker")
	ln, err := listenAt(sock)
	if err != nil {
		t.Fatal(err)
	}
	fb := &fakeBroker{t: t, sock: sock, ln: ln, adopted: make(chan []byte, 64), helloSeen: make(chan struct{}, 64)}
	fb.pipe.Store("")
	fb.wg.Add(1)
	go fb.serve(s)
	t.Cleanup(func() {
		_ = ln.Close()
		fb.wg.Wait()
	})
	return fb
}

func (fb *fakeBroker) serve(s script) {
	defer fb.wg.Done()
	for {
		c, err := fb.ln.Accept()
		if err != nil {
			return
		}
		fb.wg.Add(1)
		go func() {
			defer fb.wg.Done()
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(ioTimeout))
			// Exact-length read, as the real broker does: early data stays
			// in the socket.
			hf, err := wire.ReadFrame(c, wire.MaxHelloBody)
			if err != nil {
				fb.t.Errorf("fake broker: read hello: %v", err)
				return
			}
			h, err := wire.DecodeHello(hf.GetPayload())
			if err != nil {
				fb.t.Errorf("fake broker: decode hello: %v", err)
				return
			}
			fb.checkHello(hf, h)
			fb.mu.Lock()
			fb.lastHello, fb.lastFrame = h, hf
			fb.mu.Unlock()
			fb.hellos.Add(1)
			select {
			case fb.helloSeen <- struct{}{}:
			default:
			}
			s(fb, c, hf, h)
		}()
	}
}

// checkHello asserts the fields every Hello from this client carries.
func (fb *fakeBroker) checkHello(hf *pb.Frame, h *pb.Hello) {
	t := fb.t
	if hf.GetKind() != pb.FrameKind_FRAME_KIND_REQUEST || hf.GetPayloadProtocol() != wire.ProtocolControl {
		t.Errorf("hello frame: kind %v protocol %#x", hf.GetKind(), hf.GetPayloadProtocol())
	}
	if hf.GetRequestId() == 0 || hf.GetDeadlineUnixMs() == 0 {
		t.Errorf("hello frame: request_id %d deadline_unix_ms %d, want both set", hf.GetRequestId(), hf.GetDeadlineUnixMs())
	}
	if r := wire.ValidateHello(h, os.Getpid()); r != nil {
		t.Errorf("hello does not validate: %v", r.GetReason())
	}
	if tp := hf.GetTraceparent(); tp != "" && !wire.ValidTraceparent(tp) {
		t.Errorf("hello frame carries an invalid traceparent %q", tp)
	}
	if h.GetClientMinProtocol() != 1 || h.GetClientMaxProtocol() != 1 {
		t.Errorf("hello protocols %d..%d, want 1..1", h.GetClientMinProtocol(), h.GetClientMaxProtocol())
	}
	if int(h.GetPeerPid()) != os.Getpid() {
		t.Errorf("peer_pid %d, want %d", h.GetPeerPid(), os.Getpid())
	}
	if h.GetClientLibName() != LibName || h.GetClientLibVersion() != LibVersion {
		t.Errorf("client lib %q %q", h.GetClientLibName(), h.GetClientLibVersion())
	}
	if h.GetRequestId() == "" || h.GetConnectionId() != 0 {
		t.Errorf("request_id %q connection_id %d", h.GetRequestId(), h.GetConnectionId())
	}
}

func (fb *fakeBroker) last() (*pb.Frame, *pb.Hello) {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return fb.lastFrame, fb.lastHello
}

func (fb *fakeBroker) pipeOf() string { return fb.pipe.Load().(string) }

// write writes b to c in one write; errors are the client's business (it
// may already have given up).
func write(c net.Conn, b ...[]byte) {
	_, _ = c.Write(bytes.Join(b, nil))
}

// replyBytes encodes the HelloReply to hf.
func replyBytes(t testing.TB, hf *pb.Frame, r *pb.HelloReply) []byte {
	f, err := wire.NewResponse(hf, wire.ProtocolControl, r)
	if err != nil {
		t.Fatal(err)
	}
	b, err := wire.EncodeFrame(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func negotiated(pipe string, token []byte, caps uint64) *pb.HelloReply {
	return &pb.HelloReply{Result: &pb.HelloReply_Negotiated{Negotiated: &pb.Negotiated{
		NegotiatedProtocol: 1, DaemonVersion: "1.2.3", BackendPipe: pipe,
		ServerCapabilities: caps, HandlePassedToken: token, ConnectionId: testConnID,
		KeepaliveIntervalSecs: 1800,
	}}}
}

// handoffReply is Negotiated announcing a handoff with testToken.
func handoffReply(t testing.TB, hf *pb.Frame, pipe string) []byte {
	return replyBytes(t, hf, negotiated(pipe, testToken, wire.CapHandlePassing))
}

// readyBytes encodes a handoff-ready event.
func readyBytes(t testing.TB, kind pb.FrameKind, reqID uint64, ack *pb.HandoffAck) []byte {
	f, err := wire.NewEvent(wire.ProtocolHandoff, reqID, ack, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.Kind = kind
	b, err := wire.EncodeFrame(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func goodReady(t testing.TB) []byte {
	return readyBytes(t, pb.FrameKind_FRAME_KIND_EVENT, testConnID,
		&pb.HandoffAck{Token: testToken, Accepted: true, CorrelationId: testConnID})
}

// drain reads c until EOF (the client closed its end) and returns the bytes.
func drain(c net.Conn) []byte {
	b, _ := io.ReadAll(c)
	return b
}

// adoptScript plays a successful handoff: the broker's Negotiated, then the
// backend's ready event and first application bytes, then the backend reads
// what the client sends until EOF.
func adoptScript(fb *fakeBroker, c net.Conn, hf *pb.Frame, _ *pb.Hello) {
	write(c, handoffReply(fb.t, hf, fb.pipeOf()))
	write(c, goodReady(fb.t), []byte("A>"))
	fb.adopted <- drain(c)
}

// recorder is a real backend endpoint (backend_pipe). Each connection gets
// "B>" and everything it sends until EOF is reported on got, with the
// connection's accept order.
//
// A test reads the "B>" before it closes a connection to the recorder: on
// Windows the listener (go-winio's) drops a client that closed before the
// listener got to ConnectNamedPipe, so a connection closed at once may
// never be accepted.
type recorder struct {
	t    testing.TB
	path string
	ln   net.Listener
	n    atomic.Int32
	got  chan recorded
	wg   sync.WaitGroup
	once sync.Once
}

type recorded struct {
	idx  int
	data string
}

func startRecorder(t testing.TB, dir, name string) *recorder {
	path := endpointIn(dir, name)
	ln, err := listenAt(path)
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{t: t, path: path, ln: ln, got: make(chan recorded, 64)}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			idx := int(r.n.Add(1) - 1)
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(ioTimeout))
				write(c, []byte("B>"))
				r.got <- recorded{idx: idx, data: string(drain(c))}
			}()
		}
	}()
	t.Cleanup(r.close)
	return r
}

// close stops the listener (removing the socket file; a pipe goes away
// with its last instance) and waits for every connection handler.
func (r *recorder) close() {
	r.once.Do(func() {
		_ = r.ln.Close()
		r.wg.Wait()
	})
}

func (r *recorder) next(t testing.TB) recorded {
	t.Helper()
	select {
	case rec := <-r.got:
		return rec
	case <-time.After(ioTimeout):
		t.Fatal("backend received no connection")
		return recorded{}
	}
}

// assertUntouched proves nobody connected to the backend before: a sentinel
// connection must be the first one accepted.
func (r *recorder) assertUntouched(t testing.TB) {
	t.Helper()
	c, err := dialTest(r.path)
	if err != nil {
		t.Fatal(err)
	}
	write(c, []byte("sentinel"))
	readString(t, c, 2) // accepted: see recorder
	_ = c.Close()
	if rec := r.next(t); rec.idx != 0 || rec.data != "sentinel" {
		t.Fatalf("backend_pipe was dialed before the sentinel (first connection #%d got %q)", rec.idx, rec.data)
	}
}

// readString reads exactly n bytes from c.
func readString(t testing.TB, c net.Conn, n int) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %d bytes: %v (got %q)", n, err, b)
	}
	_ = c.SetReadDeadline(time.Time{})
	return string(b)
}

// endWrites tells the backend that the client is done writing: a
// half-close where the platform has one. A named pipe has none: there
// CloseWrite must fail with errors.ErrUnsupported, and the connection is
// closed instead.
func endWrites(t testing.TB, c *Conn) {
	t.Helper()
	err := c.CloseWrite()
	if halfCloseWorks {
		if err != nil {
			t.Errorf("CloseWrite: %v", err)
		}
		return
	}
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("CloseWrite on a named pipe: %v, want an error matching errors.ErrUnsupported", err)
	}
	_ = c.Close()
}

// recvAdopted returns what the fake backend read on an adopted connection.
func (fb *fakeBroker) recvAdopted(t testing.TB) string {
	t.Helper()
	select {
	case b := <-fb.adopted:
		return string(b)
	case <-time.After(ioTimeout):
		t.Fatal("the adopted connection's backend reported nothing")
		return ""
	}
}

// testEnv is a fake broker plus a recording backend in a fresh directory.
type testEnv struct {
	dir string
	fb  *fakeBroker
	rec *recorder
}

func newEnv(t *testing.T, s script) *testEnv {
	fdcount.Check(t)
	dir := newDir(t)
	rec := startRecorder(t, dir, "backend")
	fb := startBroker(t, dir, s)
	fb.pipe.Store(rec.path)
	return &testEnv{dir: dir, fb: fb, rec: rec}
}
