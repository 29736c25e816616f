package backend

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// Helpers of the offer tests on every platform: the client's side of a
// handed-off connection, offers and tokens, and bounded waits.

// waitTimeout bounds every wait of a test on the backend; it is a hang
// detector, never a measure of speed.
const waitTimeout = 10 * time.Second

// logBuffer collects a listener's logs, which may be written from its
// goroutines after the test returned.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// checkNoSecrets fails the test if the logs contain any of the secrets, in
// hex or raw.
func (b *logBuffer) checkNoSecrets(t *testing.T, secrets ...[]byte) {
	t.Helper()
	logs := b.String()
	for _, s := range secrets {
		if strings.Contains(logs, hex.EncodeToString(s)) || strings.Contains(logs, string(s)) {
			t.Errorf("a secret or token appears in the logs:\n%s", logs)
		}
	}
}

func newToken() []byte {
	tok := make([]byte, wire.TokenLen)
	_, _ = rand.Read(tok)
	return tok
}

// readReady reads the handoff-ready event on a client connection and checks
// it against the offer.
func readReady(t *testing.T, c net.Conn, connID uint64, token []byte) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	f, err := wire.ReadFrame(c, wire.MaxBody)
	if err != nil {
		t.Fatalf("client: read ready event: %v", err)
	}
	if f.GetKind() != pb.FrameKind_FRAME_KIND_EVENT || f.GetPayloadProtocol() != wire.ProtocolHandoff || f.GetRequestId() != connID {
		t.Fatalf("client: ready event is %s protocol 0x%04x request %d, want EVENT 0x%04x request %d",
			f.GetKind(), f.GetPayloadProtocol(), f.GetRequestId(), wire.ProtocolHandoff, connID)
	}
	a, err := wire.DecodeHandoffAck(f.GetPayload())
	if err != nil {
		t.Fatal(err)
	}
	if !a.GetAccepted() || string(a.GetToken()) != string(token) || a.GetCorrelationId() != connID {
		t.Fatalf("client: ready event %v does not match the offer (connection %d)", a, connID)
	}
}

// expectClosed checks that the peer of c closed it without writing a byte.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	var b [64]byte
	n, err := c.Read(b[:])
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("client: want EOF and no bytes, got %q, %v", b[:n], err)
	}
}

// accept calls l.Accept, bounded by waitTimeout.
func accept(t *testing.T, l net.Listener) net.Conn {
	t.Helper()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Accept: %v", r.err)
		}
		t.Cleanup(func() { r.c.Close() })
		return r.c
	case <-time.After(waitTimeout):
		l.Close() // ends the Accept above
		t.Fatal("Accept did not return")
		return nil
	}
}

// connectionReport returns the count of a ConnectionReport frame.
func connectionReport(f *pb.Frame) (uint32, bool) {
	if f.GetPayloadProtocol() != wire.ProtocolBackendControl {
		return 0, false
	}
	m, err := wire.DecodeBackendControl(f.GetPayload())
	if err != nil || m.GetConnectionReport() == nil {
		return 0, false
	}
	return m.GetConnectionReport().GetLiveConnections(), true
}

// zeroRTTOffer builds a 0-RTT offer frame for the echo service (naming
// handle, on Windows) whose HelloReply announces connection replyConn with
// replyToken, and returns it with the HelloReply's bytes.
func zeroRTTOffer(t *testing.T, handle, connID uint64, token []byte, replyConn uint64, replyToken []byte) (*pb.Frame, []byte) {
	t.Helper()
	hello, err := wire.NewRequest(wire.ProtocolControl, 99, &pb.Hello{ServiceName: "echo"})
	if err != nil {
		t.Fatal(err)
	}
	hello.Traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	rf, err := wire.NewResponse(hello, wire.ProtocolControl, &pb.HelloReply{Result: &pb.HelloReply_Negotiated{Negotiated: &pb.Negotiated{
		NegotiatedProtocol: 1, DaemonVersion: "1.2.3", BackendPipe: "/run/echo.sock", ServerCapabilities: wire.CapHandlePassing,
		KeepaliveIntervalSecs: 1800, HandlePassedToken: replyToken, ConnectionId: replyConn,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	reply, err := wire.EncodeFrame(rf)
	if err != nil {
		t.Fatal(err)
	}
	f, err := wire.NewRequest(wire.ProtocolZeroRTTOffer, connID, &pb.ZeroRttOffer{
		Offer:      &pb.HandoffOffer{HandleValue: handle, Token: token, ServiceName: "echo", CorrelationId: connID},
		HelloReply: reply,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f, reply
}
