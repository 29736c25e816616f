//go:build linux || darwin

package backend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/portier/portier/internal/fdpass"
	"github.com/portier/portier/internal/spawnenv"
	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// fakeBroker is the broker side of the backend's control protocol, for
// fault injection: the test decides what it answers, when it drops the
// connection and what it offers. It listens in a short private temporary
// directory (socket paths must stay under 108 bytes) that also holds the
// backend's endpoint.
type fakeBroker struct {
	t        *testing.T
	dir      string
	sock     string
	endpoint string
	secret   []byte
	ln       *net.UnixListener
	logs     *logBuffer // what listeners started by listenUnder log
}

func newFakeBroker(t *testing.T) *fakeBroker {
	t.Helper()
	dir, err := os.MkdirTemp("", "bk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	fb := &fakeBroker{t: t, dir: dir, sock: filepath.Join(dir, "broker.sock"), endpoint: filepath.Join(dir, "be.sock"),
		secret: make([]byte, 32), logs: new(logBuffer)}
	_, _ = rand.Read(fb.secret)
	fb.ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: fb.sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		fb.ln.Close()
		fb.logs.checkNoSecrets(t, fb.secret)
		if t.Failed() {
			t.Logf("listener logs:\n%s", fb.logs)
		}
	})
	return fb
}

// setEnv gives this process the environment the broker gives a backend it
// started (t.Setenv: tests using it cannot run in parallel).
func (fb *fakeBroker) setEnv() {
	fb.t.Setenv(spawnenv.Service, "echo")
	fb.t.Setenv(spawnenv.Version, "1.2.3")
	fb.t.Setenv(spawnenv.Broker, fb.sock)
	fb.t.Setenv(spawnenv.Endpoint, fb.endpoint)
	fb.t.Setenv(spawnenv.SpawnSecret, hex.EncodeToString(fb.secret))
}

// ctrlPeer is the fake broker's end of one control connection.
type ctrlPeer struct {
	t        *testing.T
	conn     *net.UnixConn
	regFrame *pb.Frame
	reg      *pb.Register
	// reports are the ConnectionReports read so far (read skips them, so
	// tests about offers need not expect them between ACKs).
	reports []uint32
}

// accept waits for the backend's next control connection and reads its
// Register frame, checking it carries what the environment said.
func (fb *fakeBroker) accept() *ctrlPeer {
	t := fb.t
	t.Helper()
	_ = fb.ln.SetDeadline(time.Now().Add(waitTimeout))
	c, err := fb.ln.AcceptUnix()
	if err != nil {
		t.Fatalf("fake broker: no control connection: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	f, err := wire.ReadFrame(c, wire.MaxBody)
	if err != nil {
		t.Fatalf("fake broker: read Register: %v", err)
	}
	if f.GetPayloadProtocol() != wire.ProtocolBackendControl || f.GetKind() != pb.FrameKind_FRAME_KIND_REQUEST {
		t.Fatalf("fake broker: first frame is %s of protocol 0x%04x, want a backend control REQUEST", f.GetKind(), f.GetPayloadProtocol())
	}
	m := new(pb.BackendControl)
	if err := proto.Unmarshal(f.GetPayload(), m); err != nil || m.GetRegister() == nil {
		t.Fatalf("fake broker: first control message is %v (%v), want Register", m, err)
	}
	reg := m.GetRegister()
	if reg.GetServiceName() != "echo" || reg.GetVersion() != "1.2.3" || reg.GetEndpoint() != fb.endpoint ||
		reg.GetPid() != uint32(os.Getpid()) || string(reg.GetSpawnSecret()) != string(fb.secret) || !reg.GetHandoffCapable() {
		t.Errorf("fake broker: Register %v does not match the environment", reg)
	}
	return &ctrlPeer{t: t, conn: c, regFrame: f, reg: reg}
}

// reply answers the registration.
func (p *ctrlPeer) reply(rr *pb.RegisterReply) {
	p.t.Helper()
	f, err := wire.NewResponse(p.regFrame, wire.ProtocolBackendControl, &pb.BackendControl{Msg: &pb.BackendControl_RegisterReply{RegisterReply: rr}})
	if err != nil {
		p.t.Fatal(err)
	}
	p.write(f)
}

func (p *ctrlPeer) write(f *pb.Frame) {
	p.t.Helper()
	_ = p.conn.SetWriteDeadline(time.Now().Add(waitTimeout))
	if err := wire.WriteFrame(p.conn, f); err != nil {
		p.t.Fatalf("fake broker: write: %v", err)
	}
}

// quiesce asks the backend to close.
func (p *ctrlPeer) quiesce() {
	p.t.Helper()
	f, err := wire.NewRequest(wire.ProtocolBackendControl, 0, &pb.BackendControl{Msg: &pb.BackendControl_Quiesce{Quiesce: &pb.Quiesce{Reason: "test"}}})
	if err != nil {
		p.t.Fatal(err)
	}
	p.write(f)
}

// offer sends f with fd in one sendmsg, as the broker does, and then closes
// fd: the broker keeps no copy it could write to.
func (p *ctrlPeer) offer(f *pb.Frame, fd int) {
	p.t.Helper()
	b, err := wire.EncodeFrame(f)
	if err != nil {
		p.t.Fatal(err)
	}
	sent, err := fdpass.SendWithFD(p.conn, b, fd, time.Now().Add(waitTimeout))
	unix.Close(fd)
	if err != nil || !sent {
		p.t.Fatalf("fake broker: send offer: sent=%v, %v", sent, err)
	}
}

// read returns the next frame from the backend other than a
// ConnectionReport, which it records in p.reports.
func (p *ctrlPeer) read() (*pb.Frame, error) {
	for {
		f, err := p.readAny()
		if err != nil {
			return nil, err
		}
		if n, ok := connectionReport(f); ok {
			p.reports = append(p.reports, n)
			continue
		}
		return f, nil
	}
}

// readAny returns the next frame from the backend, whatever it is.
func (p *ctrlPeer) readAny() (*pb.Frame, error) {
	_ = p.conn.SetReadDeadline(time.Now().Add(waitTimeout))
	return wire.ReadFrame(p.conn, wire.MaxBody)
}

// awaitReport reads frames until a ConnectionReport of want live
// connections arrives (earlier reports and other frames are recorded or
// dropped), failing the test at the wait bound.
func (p *ctrlPeer) awaitReport(want uint32) {
	p.t.Helper()
	for {
		f, err := p.readAny()
		if err != nil {
			p.t.Fatalf("fake broker: waiting for a report of %d live connections: %v (reports so far %v)", want, err, p.reports)
		}
		if n, ok := connectionReport(f); ok {
			p.reports = append(p.reports, n)
			if n == want {
				return
			}
		}
	}
}

// readAck returns the next frame, which must be a HandoffAck RESPONSE whose
// request_id is its correlation id.
func (p *ctrlPeer) readAck() *pb.HandoffAck {
	p.t.Helper()
	f, err := p.read()
	if err != nil {
		p.t.Fatalf("fake broker: read ACK: %v", err)
	}
	if f.GetPayloadProtocol() != wire.ProtocolHandoff || f.GetKind() != pb.FrameKind_FRAME_KIND_RESPONSE {
		p.t.Fatalf("fake broker: got %s of protocol 0x%04x, want a HandoffAck RESPONSE", f.GetKind(), f.GetPayloadProtocol())
	}
	a, err := wire.DecodeHandoffAck(f.GetPayload())
	if err != nil {
		p.t.Fatal(err)
	}
	if f.GetRequestId() != a.GetCorrelationId() {
		p.t.Errorf("ACK frame request_id %d, correlation_id %d: want equal", f.GetRequestId(), a.GetCorrelationId())
	}
	return a
}

// readAcks reads ACKs until it has n of them (accepting ACKs are coalesced,
// so they may arrive together and in a later batch than a rejection), keyed
// by correlation id.
func (p *ctrlPeer) readAcks(n int) map[uint64]*pb.HandoffAck {
	p.t.Helper()
	acks := make(map[uint64]*pb.HandoffAck, n)
	for len(acks) < n {
		a := p.readAck()
		if _, dup := acks[a.GetCorrelationId()]; dup {
			p.t.Fatalf("two ACKs for connection %d", a.GetCorrelationId())
		}
		acks[a.GetCorrelationId()] = a
	}
	return acks
}

// expectUnregister reads what the backend sends when its listener closes:
// an Unregister, then EOF.
func (p *ctrlPeer) expectUnregister() {
	p.t.Helper()
	f, err := p.read()
	if err != nil {
		p.t.Fatalf("fake broker: want Unregister, got %v", err)
	}
	m := new(pb.BackendControl)
	if f.GetPayloadProtocol() != wire.ProtocolBackendControl || proto.Unmarshal(f.GetPayload(), m) != nil || m.GetUnregister() == nil {
		p.t.Fatalf("fake broker: got %v, want Unregister", f)
	}
	p.expectEOF()
}

// expectEOF checks that the backend closed the control connection.
func (p *ctrlPeer) expectEOF() {
	p.t.Helper()
	if f, err := p.read(); !errors.Is(err, io.EOF) {
		p.t.Fatalf("fake broker: want EOF on the control connection, got %v, %v", f, err)
	}
}

// clientPair returns the client's end of a fresh local connection and the
// descriptor of the end the broker would hand off.
func clientPair(t *testing.T) (*net.UnixConn, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.CloseOnExec(fds[0])
	unix.CloseOnExec(fds[1])
	// The broker's end is a Go socket: non-blocking, a property of the open
	// file description the backend receives too.
	if err := unix.SetNonblock(fds[1], true); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), "client")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		unix.Close(fds[1])
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UnixConn), fds[1]
}

// listenUnder runs Listen against fb, accepting the registration, and
// returns the listener and the control connection it registered on.
func listenUnder(t *testing.T, fb *fakeBroker, opts ...Option) (*Listener, *ctrlPeer) {
	t.Helper()
	type result struct {
		l   *Listener
		err error
	}
	done := make(chan result, 1)
	opts = append([]Option{Logger(slog.New(slog.NewTextHandler(fb.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))}, opts...)
	go func() {
		l, err := Listen(context.Background(), opts...)
		done <- result{l, err}
	}()
	p := fb.accept()
	p.reply(&pb.RegisterReply{Accepted: true})
	r := <-done
	if r.err != nil {
		t.Fatalf("Listen: %v", r.err)
	}
	l := r.l
	t.Cleanup(func() { l.Close() })
	return l, p
}

// handoffOffer builds an offer frame for the echo service.
func handoffOffer(t *testing.T, connID uint64, token []byte) *pb.Frame {
	t.Helper()
	f, err := wire.NewRequest(wire.ProtocolHandoff, connID, &pb.HandoffOffer{Token: token, ServiceName: "echo", CorrelationId: connID})
	if err != nil {
		t.Fatal(err)
	}
	return f
}
