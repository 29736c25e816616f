package backend

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portier/portier/internal/fdpass"
	"github.com/portier/portier/internal/ipc"
	"github.com/portier/portier/internal/spawnenv"
	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
	"golang.org/x/sys/windows"
)

// The broker's side of a Windows handoff, played by the test in this
// process: a broker pipe the backend registers on, client pipes whose
// server ends (bound to no completion port, as the broker's are) are
// duplicated into this process like the broker duplicates them into a
// backend, and offers that name the duplicated handle's value.

var pipeSeq atomic.Int64

// testPipe returns a pipe name of this test process.
func testPipe(what string) string {
	return fmt.Sprintf(`\\.\pipe\portier-backend-test-%d-%d-%s`, os.Getpid(), pipeSeq.Add(1), what)
}

type winBroker struct {
	t        *testing.T
	ln       *ipc.Listener // the broker's pipe
	clients  *ipc.Listener // where the test's clients connect
	name     string
	endpoint string
	secret   []byte
	logs     *logBuffer
}

func newWinBroker(t *testing.T) *winBroker {
	t.Helper()
	fb := &winBroker{t: t, name: testPipe("broker"), endpoint: testPipe("be"), secret: make([]byte, 32), logs: new(logBuffer)}
	_, _ = rand.Read(fb.secret)
	var err error
	if fb.ln, err = ipc.ListenSingleton(fb.name); err != nil {
		t.Fatal(err)
	}
	if fb.clients, err = ipc.ListenSingleton(testPipe("clients")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		fb.ln.Close()
		fb.clients.Close()
		fb.logs.checkNoSecrets(t, fb.secret)
		if t.Failed() {
			t.Logf("listener logs:\n%s", fb.logs)
		}
	})
	return fb
}

func (fb *winBroker) setEnv() {
	fb.t.Setenv(spawnenv.Service, "echo")
	fb.t.Setenv(spawnenv.Version, "1.2.3")
	fb.t.Setenv(spawnenv.Broker, fb.name)
	fb.t.Setenv(spawnenv.Endpoint, fb.endpoint)
	fb.t.Setenv(spawnenv.SpawnSecret, hex.EncodeToString(fb.secret))
}

// acceptPipe accepts the next connection on ln, bounded by waitTimeout.
func acceptPipe(t *testing.T, ln *ipc.Listener) *ipc.PipeConn {
	t.Helper()
	type result struct {
		c   *ipc.PipeConn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := ln.AcceptPipe()
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("accept: %v", r.err)
		}
		return r.c
	case <-time.After(waitTimeout):
		ln.Close() // ends the AcceptPipe above
		t.Fatal("no connection")
		return nil
	}
}

// winCtrl is the test broker's end of the backend's control connection.
type winCtrl struct {
	t        *testing.T
	conn     *ipc.PipeConn
	regFrame *pb.Frame
}

func (fb *winBroker) accept() *winCtrl {
	t := fb.t
	t.Helper()
	c := acceptPipe(t, fb.ln)
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	f, err := wire.ReadFrame(c, wire.MaxBody)
	if err != nil {
		t.Fatalf("test broker: read Register: %v", err)
	}
	m, err := wire.DecodeBackendControl(f.GetPayload())
	if err != nil || m.GetRegister() == nil {
		t.Fatalf("test broker: first message %v (%v), want Register", m, err)
	}
	if reg := m.GetRegister(); !reg.GetHandoffCapable() || reg.GetPid() != uint32(os.Getpid()) || !bytes.Equal(reg.GetSpawnSecret(), fb.secret) {
		t.Errorf("Register %v: want the handoff capability, this pid and the secret", reg)
	}
	return &winCtrl{t: t, conn: c, regFrame: f}
}

func (p *winCtrl) write(f *pb.Frame) {
	p.t.Helper()
	_ = p.conn.SetWriteDeadline(time.Now().Add(waitTimeout))
	if err := wire.WriteFrame(p.conn, f); err != nil {
		p.t.Fatalf("test broker: write: %v", err)
	}
}

// readAck returns the next HandoffAck, skipping the backend's reports of
// its live connections.
func (p *winCtrl) readAck() *pb.HandoffAck {
	p.t.Helper()
	var f *pb.Frame
	for {
		_ = p.conn.SetReadDeadline(time.Now().Add(waitTimeout))
		var err error
		f, err = wire.ReadFrame(p.conn, wire.MaxBody)
		if err != nil {
			p.t.Fatalf("test broker: read ACK: %v", err)
		}
		if _, report := connectionReport(f); !report {
			break
		}
	}
	a, err := wire.DecodeHandoffAck(f.GetPayload())
	if err != nil || f.GetKind() != pb.FrameKind_FRAME_KIND_RESPONSE {
		p.t.Fatalf("test broker: got %s %v (%v), want a HandoffAck RESPONSE", f.GetKind(), f, err)
	}
	return a
}

// listenUnderWin runs Listen against fb and accepts the registration.
func listenUnderWin(t *testing.T, fb *winBroker) (*Listener, *winCtrl) {
	t.Helper()
	type result struct {
		l   *Listener
		err error
	}
	done := make(chan result, 1)
	go func() {
		l, err := Listen(context.Background(), Logger(slog.New(slog.NewTextHandler(fb.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
		done <- result{l, err}
	}()
	p := fb.accept()
	rf, err := wire.NewResponse(p.regFrame, wire.ProtocolBackendControl, &pb.BackendControl{Msg: &pb.BackendControl_RegisterReply{RegisterReply: &pb.RegisterReply{Accepted: true}}})
	if err != nil {
		t.Fatal(err)
	}
	p.write(rf)
	r := <-done
	if r.err != nil {
		t.Fatalf("Listen: %v", r.err)
	}
	t.Cleanup(func() { r.l.Close() })
	return r.l, p
}

// clientPair connects a client to the test's client pipe and duplicates
// the server end into this process, as the broker duplicates it into a
// backend; the original server handle is closed, so the duplicate is the
// only one: once it is closed the client reads EOF.
func (fb *winBroker) clientPair() (net.Conn, uint64) {
	t := fb.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	type dialed struct {
		c   net.Conn
		err error
	}
	ch := make(chan dialed, 1)
	go func() {
		c, err := ipc.DialPipe(ctx, fb.clients.Path())
		ch <- dialed{c, err}
	}()
	server := acceptPipe(t, fb.clients)
	d := <-ch
	if d.err != nil {
		server.Close()
		t.Fatal(d.err)
	}
	t.Cleanup(func() { d.c.Close() })
	var v uint64
	err := fdpass.WithHandle(server, func(h windows.Handle) error {
		var err error
		v, err = fdpass.DuplicateInto(uint32(os.Getpid()), h)
		return err
	})
	server.Close()
	if err != nil {
		t.Fatal(err)
	}
	return d.c, v
}

func windowsOffer(t *testing.T, connID uint64, token []byte, handle uint64) *pb.Frame {
	t.Helper()
	f, err := wire.NewRequest(wire.ProtocolHandoff, connID, &pb.HandoffOffer{HandleValue: handle, Token: token, ServiceName: "echo", CorrelationId: connID})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestHandoffAdoptedWindows: an offered pipe handle becomes a connection
// that Accept returns, after the client got the ready event; the broker
// gets an accepting ACK. Bytes the client wrote before the offer are the
// first the application reads.
func TestHandoffAdoptedWindows(t *testing.T) {
	fb := newWinBroker(t)
	fb.setEnv()
	l, p := listenUnderWin(t, fb)

	client, v := fb.clientPair()
	_ = client.SetDeadline(time.Now().Add(waitTimeout))
	if _, err := client.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	tok := newToken()
	p.write(windowsOffer(t, 7, tok, v))
	readReady(t, client, 7, tok)
	c := accept(t, l)
	_ = c.SetDeadline(time.Now().Add(waitTimeout))
	buf := make([]byte, 5)
	if _, err := c.Read(buf); err != nil || string(buf) != "early" {
		t.Fatalf("backend read %q, %v; want the client's early bytes", buf, err)
	}
	if _, err := c.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Read(buf[:4]); err != nil || string(buf[:4]) != "pong" {
		t.Fatalf("client read %q, %v", buf[:4], err)
	}
	if ack := p.readAck(); !ack.GetAccepted() || !bytes.Equal(ack.GetToken(), tok) || ack.GetCorrelationId() != 7 {
		t.Errorf("ACK %v, want accepted for connection 7", ack)
	}
	// Deadlines work on the adopted connection.
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read past the deadline: %v, want os.ErrDeadlineExceeded", err)
	}
}

// TestOfferRejectedClosesHandle: every rejection of an offer closes the
// handle it named without writing to it (the client reads EOF: the
// duplicate was the last server handle) and ACKs accepted=false.
func TestOfferRejectedClosesHandle(t *testing.T) {
	fb := newWinBroker(t)
	fb.setEnv()
	_, p := listenUnderWin(t, fb)
	tok := newToken()
	cases := []struct {
		name  string
		frame func(v uint64) *pb.Frame
	}{
		{"other service", func(v uint64) *pb.Frame {
			f, _ := wire.NewRequest(wire.ProtocolHandoff, 10, &pb.HandoffOffer{HandleValue: v, Token: tok, ServiceName: "other", CorrelationId: 10})
			return f
		}},
		{"correlation differs from request id", func(v uint64) *pb.Frame {
			f, _ := wire.NewRequest(wire.ProtocolHandoff, 10, &pb.HandoffOffer{HandleValue: v, Token: tok, ServiceName: "echo", CorrelationId: 11})
			return f
		}},
		{"event instead of request", func(v uint64) *pb.Frame {
			f := windowsOffer(t, 10, tok, v)
			f.Kind = pb.FrameKind_FRAME_KIND_EVENT
			return f
		}},
		{"expired", func(v uint64) *pb.Frame {
			f := windowsOffer(t, 10, tok, v)
			f.DeadlineUnixMs = uint64(time.Now().Add(-time.Second).UnixMilli())
			return f
		}},
		// Refused by the decoder: the handle is closed all the same.
		{"short token", func(v uint64) *pb.Frame { return windowsOffer(t, 10, tok[:15], v) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			client, v := fb.clientPair()
			p.write(tc.frame(v))
			if ack := p.readAck(); ack.GetAccepted() || ack.GetErrorDetail() == "" {
				t.Errorf("ACK %v, want a rejection with a reason", ack)
			}
			expectClosed(t, client)
		})
	}
	t.Run("no handle", func(t *testing.T) {
		p.write(windowsOffer(t, 12, tok, 0))
		if ack := p.readAck(); ack.GetAccepted() || !strings.Contains(ack.GetErrorDetail(), "handle") {
			t.Errorf("ACK %v, want a rejection naming the missing handle", ack)
		}
	})
	t.Run("not a pipe", func(t *testing.T) {
		// A handle of another kind: ConnFromHandle refuses it (and closes
		// it, which its own tests check), nothing is written anywhere.
		ev, err := windows.CreateEvent(nil, 0, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		p.write(windowsOffer(t, 13, tok, uint64(ev)))
		if ack := p.readAck(); ack.GetAccepted() || !strings.Contains(ack.GetErrorDetail(), "adopt") {
			t.Errorf("ACK %v, want a rejection from the adoption", ack)
		}
	})
}

// TestZeroRTTOfferWindows: a 0-RTT offer names its handle like any other;
// the backend writes the HelloReply it carries, then the ready event, and
// the application then reads the client's early bytes. One whose reply
// announces another connection is rejected and its handle closed unwritten.
func TestZeroRTTOfferWindows(t *testing.T) {
	fb := newWinBroker(t)
	fb.setEnv()
	l, p := listenUnderWin(t, fb)
	tok := newToken()

	client, v := fb.clientPair()
	p.write(func() *pb.Frame { f, _ := zeroRTTOffer(t, v, 10, tok, 11, tok); return f }())
	if ack := p.readAck(); ack.GetAccepted() || ack.GetErrorDetail() == "" {
		t.Fatalf("ACK %v, want a rejection with a reason", ack)
	}
	expectClosed(t, client)

	client, v = fb.clientPair()
	_ = client.SetDeadline(time.Now().Add(waitTimeout))
	if _, err := client.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	f, reply := zeroRTTOffer(t, v, 7, tok, 7, tok)
	p.write(f)
	got := make([]byte, len(reply))
	if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, reply) {
		t.Fatalf("client read %x, %v; want the offer's HelloReply %x", got, err, reply)
	}
	readReady(t, client, 7, tok)
	c := accept(t, l)
	_ = c.SetDeadline(time.Now().Add(waitTimeout))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "early" {
		t.Fatalf("backend read %q, %v; want the client's early bytes", buf, err)
	}
	if ack := p.readAck(); !ack.GetAccepted() || ack.GetCorrelationId() != 7 {
		t.Errorf("ACK %v, want accepted for connection 7", ack)
	}
}
