package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portier/portier/internal/ipc"
	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
	dto "github.com/prometheus/client_model/go"
)

// The Windows tests run a real broker in the test process on a named pipe
// of its own, with backends that are this test binary re-executed in a
// role, and clients that speak the protocol by hand over real pipes: a
// handed-off connection is the very pipe instance the client opened,
// duplicated into the backend process.

var winPipeSeq atomic.Int64

// winHarness is an in-process broker on a fresh pipe and directory.
type winHarness struct {
	t      *testing.T
	dir    string
	sock   string
	svcDir string
	b      *Broker
	logs   *logSink
	stop   context.CancelFunc
	served chan error
}

// logSink keeps the broker's log for assertions and copies it to the test
// log (until the test ends: backend exit logs can arrive during cleanup).
type logSink struct {
	t   *testing.T
	mu  sync.Mutex
	buf bytes.Buffer
	end atomic.Bool
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.buf.Write(p)
	s.mu.Unlock()
	if !s.end.Load() {
		func() {
			defer func() { _ = recover() }()
			s.t.Log(strings.TrimRight(string(p), "\n"))
		}()
	}
	return len(p), nil
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func newWinHarness(t *testing.T, tweak func(*Config)) *winHarness {
	t.Helper()
	dir := t.TempDir()
	h := &winHarness{t: t, dir: dir, svcDir: filepath.Join(dir, "svc"), logs: &logSink{t: t},
		sock: fmt.Sprintf(`\\.\pipe\portier-broker-test-%d-%d`, os.Getpid(), winPipeSeq.Add(1))}
	t.Cleanup(func() { h.logs.end.Store(true) })
	if err := os.Mkdir(h.svcDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Socket: h.sock, ServicesDir: h.svcDir, StateDir: filepath.Join(dir, "state"), StopBackendsOnExit: true,
		Logger: slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if tweak != nil {
		tweak(&cfg)
	}
	h.start(cfg)
	return h
}

// start runs a broker with cfg until the test ends (or h.close).
func (h *winHarness) start(cfg Config) {
	h.t.Helper()
	b, err := New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	h.b = b
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	served := make(chan error, 1)
	h.served = served
	go func() { served <- b.Serve(ctx) }()
	h.t.Cleanup(h.close)
	select {
	case <-b.Listening():
	case err := <-served:
		served <- err
		h.t.Fatalf("Serve: %v", err)
	case <-time.After(10 * time.Second):
		h.t.Fatalf("broker not listening on %s", h.sock)
	}
}

// close stops the broker (once; later calls do nothing).
func (h *winHarness) close() {
	if h.stop == nil {
		return
	}
	h.stop()
	h.stop = nil
	select {
	case err := <-h.served:
		if err != nil {
			h.t.Errorf("Serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		h.t.Error("broker did not stop within 20s")
	}
}

// define writes <name>.toml running this test binary in the given role,
// with env (KEY=VALUE pairs) added to its environment.
func (h *winHarness) define(name, role, extra string, env ...string) {
	h.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		h.t.Fatal(err)
	}
	vars := fmt.Sprintf("%s = %q", roleEnv, role)
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars += fmt.Sprintf(", %s = %s", k, strconv.Quote(v))
	}
	body := fmt.Sprintf("name = %q\nversion = \"1.0.0\"\ncommand = [%s]\nenv = { %s }\n%s",
		name, strconv.Quote(exe), vars, extra)
	if err := os.WriteFile(filepath.Join(h.svcDir, name+".toml"), []byte(body), 0o600); err != nil {
		h.t.Fatal(err)
	}
}

// settle waits until every handoff the broker began has its outcome.
func (h *winHarness) settle() {
	h.t.Helper()
	if !h.b.inflight.wait(15 * time.Second) {
		h.t.Fatal("handoffs still in flight after 15s")
	}
}

// metric returns the value of the sample of name whose labels include
// want (0 when there is none).
func (h *winHarness) metric(name string, want map[string]string) float64 {
	h.t.Helper()
	mfs, err := h.b.metrics.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelsMatch(m, want) {
				switch {
				case m.GetCounter() != nil:
					return m.GetCounter().GetValue()
				case m.GetGauge() != nil:
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}

func labelsMatch(m *dto.Metric, want map[string]string) bool {
	got := map[string]string{}
	for _, lp := range m.GetLabel() {
		got[lp.GetName()] = lp.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// backendPID is the pid of service's registered backend.
func (h *winHarness) backendPID(service string) int {
	h.t.Helper()
	for _, p := range h.b.sup.snapshot() {
		if p.service == service {
			return p.pid
		}
	}
	h.t.Fatalf("no backend of %s", service)
	return 0
}

// rawConn is a connection a hand-written client got from the broker.
type rawConn struct {
	net.Conn
	route    string // "handoff" or "reconnect"
	neg      *pb.Negotiated
	fellBack string // for a handoff that fell back: "eof" or "timeout"
}

// dialOpts are what a hand-written client asks for.
type dialOpts struct {
	noHandoff    bool
	early        []byte
	readyTimeout time.Duration // default 5 s
}

// rawDial connects to service through the broker the way client.Dial does,
// with the protocol spelled out: the Hello (and early data) in one write;
// Negotiated; with a token, the ready event, or on EOF or the ready
// timeout the backend's own pipe, where the early data is written again.
func (h *winHarness) rawDial(service string, o dialOpts) (*rawConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := ipc.DialPipe(ctx, h.sock)
	if err != nil {
		return nil, err
	}
	caps := uint64(wire.CapHandlePassing)
	if o.noHandoff {
		caps = 0
	}
	f, err := wire.NewRequest(wire.ProtocolControl, 1, &pb.Hello{
		ClientMinProtocol: wire.ProtocolVersion, ClientMaxProtocol: wire.ProtocolVersion,
		ServiceName: service, WantedVersion: "1.0.0", ClientCapabilities: caps,
	})
	if err != nil {
		c.Close()
		return nil, err
	}
	msg, err := wire.EncodeFrame(f)
	if err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(append(msg, o.early...)); err != nil {
		c.Close()
		return nil, fmt.Errorf("write Hello: %w", err)
	}
	rf, err := wire.ReadFrame(c, wire.MaxBody)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("read HelloReply: %w", err)
	}
	hr, err := wire.DecodeHelloReply(rf.GetPayload())
	if err != nil {
		c.Close()
		return nil, err
	}
	if r := hr.GetRefused(); r != nil {
		c.Close()
		return nil, &refusedError{r}
	}
	neg := hr.GetNegotiated()
	out := &rawConn{neg: neg}
	if tok := neg.GetHandlePassedToken(); len(tok) > 0 {
		rt := o.readyTimeout
		if rt == 0 {
			rt = 5 * time.Second
		}
		_ = c.SetReadDeadline(time.Now().Add(rt))
		ev, err := wire.ReadFrame(c, wire.MaxBody)
		if err == nil {
			a, derr := wire.DecodeHandoffAck(ev.GetPayload())
			if derr != nil || ev.GetKind() != pb.FrameKind_FRAME_KIND_EVENT || !a.GetAccepted() || !bytes.Equal(a.GetToken(), tok) ||
				a.GetCorrelationId() != neg.GetConnectionId() {
				c.Close()
				return nil, fmt.Errorf("bad ready event %v (%v)", a, derr)
			}
			_ = c.SetDeadline(time.Time{})
			out.Conn, out.route = c, "handoff"
			return out, nil
		}
		out.fellBack = "eof"
		if errors.Is(err, os.ErrDeadlineExceeded) {
			out.fellBack = "timeout"
		} else if !errors.Is(err, io.EOF) {
			c.Close()
			return nil, fmt.Errorf("read ready event: %w", err)
		}
	}
	c.Close()
	d, err := ipc.DialPipe(ctx, neg.GetBackendPipe())
	if err != nil {
		return out, fmt.Errorf("reconnect to %s: %w", neg.GetBackendPipe(), err)
	}
	if len(o.early) > 0 {
		_ = d.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := d.Write(o.early); err != nil {
			d.Close()
			return out, err
		}
		_ = d.SetWriteDeadline(time.Time{})
	}
	out.Conn, out.route = d, "reconnect"
	return out, nil
}

// echoes checks that c echoes msg.
func echoes(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	readEcho(t, c, msg)
}

// readEcho checks that the next bytes on c are msg.
func readEcho(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if string(buf) != msg {
		t.Fatalf("echo = %q, want %q", buf, msg)
	}
}

// outcomes collects the handoff outcomes the broker logged, by the
// fallback log line's fields.
func (h *winHarness) fallbackLines() []string {
	var out []string
	for _, l := range strings.Split(h.logs.String(), "\n") {
		if strings.Contains(l, "route=handoff_fallback") {
			out = append(out, l)
		}
	}
	return out
}

// refusedError is the broker's refusal of a hand-written client's Hello.
type refusedError struct{ r *pb.Refused }

func (e *refusedError) Error() string {
	return fmt.Sprintf("refused %s: %s", e.r.GetCode(), e.r.GetReason())
}
