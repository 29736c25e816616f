package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portier/portier/internal/fdcount"
	"github.com/portier/portier/internal/ipc"
	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

const traceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func TestHandoffAdopted(t *testing.T) {
	e := newEnv(t, adoptScript)
	early := []byte("REQ1")
	c, err := Dial(t.Context(), "echo", Socket(e.fb.sock), Version("1.2.3"), EarlyData(early),
		TraceParent(traceParent), HandshakeTimeout(ioTimeout), ReadyTimeout(ioTimeout))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Route() != Handoff || c.ConnectionID() != testConnID || c.BackendPipe() != e.rec.path || c.DaemonVersion() != "1.2.3" {
		t.Fatalf("route %v id %d pipe %q version %q", c.Route(), c.ConnectionID(), c.BackendPipe(), c.DaemonVersion())
	}
	if string(early) != "REQ1" {
		t.Fatal("Dial modified the early data")
	}
	hf, h := e.fb.last()
	if h.GetServiceName() != "echo" || h.GetWantedVersion() != "1.2.3" ||
		h.GetClientCapabilities() != wire.CapHandlePassing|wire.CapZeroRTT|wire.CapRefusalCodes || hf.GetTraceparent() != traceParent {
		t.Fatalf("hello: %v, traceparent %q", h, hf.GetTraceparent())
	}
	if got := readString(t, c, 2); got != "A>" {
		t.Fatalf("first bytes from the backend %q, want A>", got)
	}
	if _, err := c.Write([]byte("more")); err != nil {
		t.Fatal(err)
	}
	endWrites(t, c)
	// The early data reached the backend exactly once, on the adopted
	// connection, and backend_pipe was never dialed.
	if got := e.fb.recvAdopted(t); got != "REQ1more" {
		t.Fatalf("backend read %q, want REQ1more", got)
	}
	e.rec.assertUntouched(t)
}

// TestHalfClose: where the platform has a half-close, CloseWrite lets the
// backend read EOF while the client still reads its answer. A named pipe
// has none: CloseWrite and CloseRead fail with errors.ErrUnsupported and
// change nothing, the connection keeps working, and Close ends the stream.
func TestHalfClose(t *testing.T) {
	e := newEnv(t, func(fb *fakeBroker, c net.Conn, hf *pb.Frame, _ *pb.Hello) {
		write(c, handoffReply(fb.t, hf, fb.pipeOf()), goodReady(fb.t))
		req := make([]byte, 4)
		if _, err := io.ReadFull(c, req); err != nil {
			fb.t.Errorf("backend: %v", err)
			return
		}
		write(c, []byte("pong"))
		fb.adopted <- drain(c)
	})
	c, err := Dial(t.Context(), "echo", Socket(e.fb.sock), AwaitReady(), EarlyData([]byte("ping")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Route() != Handoff {
		t.Fatalf("route %v", c.Route())
	}
	werr := c.CloseWrite()
	if halfCloseWorks {
		if werr != nil {
			t.Fatal(werr)
		}
		// The backend saw the end while this side is open.
		if got := e.fb.recvAdopted(t); got != "" {
			t.Fatalf("backend read %q after the request", got)
		}
		if got := readString(t, c, 4); got != "pong" {
			t.Fatalf("read %q after CloseWrite", got)
		}
		return
	}
	for name, err := range map[string]error{"CloseWrite": werr, "CloseRead": c.CloseRead()} {
		if !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("%s on a named pipe: %v, want errors.ErrUnsupported", name, err)
		}
	}
	if _, err := c.Write([]byte("more")); err != nil {
		t.Fatalf("write after the refused half-close: %v", err)
	}
	if got := readString(t, c, 4); got != "pong" {
		t.Fatalf("read %q after the refused half-close", got)
	}
	_ = c.Close()
	if got := e.fb.recvAdopted(t); got != "more" {
		t.Fatalf("backend read %q, want more", got)
	}
}

// TestHandoffReadAhead has the broker and backend bytes arrive in one chunk,
// so Dial reads the backend's first reply together with the handshake, and
// checks that Read hands it out first, in order, however small the reads.
func TestHandoffReadAhead(t *testing.T) {
	const app = "hello from the backend"
	e := newEnv(t, func(fb *fakeBroker, c net.Conn, hf *pb.Frame, _ *pb.Hello) {
		write(c, handoffReply(fb.t, hf, fb.pipeOf()), goodReady(fb.t), []byte(app))
		write(c, []byte("|later"))
		fb.adopted <- drain(c)
	})
	c, err := Dial(t.Context(), "echo", Socket(e.fb.sock))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Route() != Handoff {
		t.Fatalf("route %v", c.Route())
	}
	if !c.hasPending.Load() {
		t.Fatal("the backend's first bytes were not read ahead")
	}
	var got []byte
	one := make([]byte, 1)
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	for len(got) < len(app)+len("|later") {
		n, err := c.Read(one)
		if err != nil {
			t.Fatalf("read after %q: %v", got, err)
		}
		got = append(got, one[:n]...)
	}
	if string(got) != app+"|later" {
		t.Fatalf("read %q", got)
	}
	if c.hasPending.Load() {
		t.Fatal("read-ahead buffer not released")
	}
	_ = c.Close()
	if got := e.fb.recvAdopted(t); got != "" {
		t.Fatalf("backend read %q without early data", got)
	}
}

// TestFallbackReconnect covers every way a handoff can fail after
// Negotiated: each ends on the reconnect route, without an error, with the
// early data replayed to backend_pipe exactly once.
func TestFallbackReconnect(t *testing.T) {
	ack := func(token []byte, accepted bool, corr uint64) *pb.HandoffAck {
		return &pb.HandoffAck{Token: token, Accepted: accepted, CorrelationId: corr}
	}
	otherToken := make([]byte, wire.TokenLen)
	copy(otherToken, testToken)
	otherToken[15] ^= 1
	ev := pb.FrameKind_FRAME_KIND_EVENT
	cases := []struct {
		name  string
		ready func(t testing.TB) []byte // written after Negotiated; nil = nothing
		reply func(fb *fakeBroker, hf *pb.Frame) []byte
		wait  bool // keep the connection open until the client closes it
		opts  []Option
	}{
		{name: "eof before ready event"},
		{name: "refused ready event", wait: true, ready: func(t testing.TB) []byte {
			return readyBytes(t, ev, testConnID, ack(testToken, false, testConnID))
		}},
		{name: "token mismatch", wait: true, ready: func(t testing.TB) []byte {
			return readyBytes(t, ev, testConnID, ack(otherToken, true, testConnID))
		}},
		{name: "empty token", wait: true, ready: func(t testing.TB) []byte {
			return readyBytes(t, ev, testConnID, ack(nil, true, testConnID))
		}},
		{name: "wrong correlation id", wait: true, ready: func(t testing.TB) []byte {
			return readyBytes(t, ev, testConnID, ack(testToken, true, testConnID+1))
		}},
		{name: "wrong request id", wait: true, ready: func(t testing.TB) []byte {
			return readyBytes(t, ev, testConnID+1, ack(testToken, true, testConnID))
		}},
		{name: "not an event", wait: true, ready: func(t testing.TB) []byte {
			return readyBytes(t, pb.FrameKind_FRAME_KIND_RESPONSE, testConnID, ack(testToken, true, testConnID))
		}},
		{name: "garbage", wait: true, ready: func(testing.TB) []byte {
			return []byte{0x02, 0xff, 0xff, 0xff, 0xff, 'x'}
		}},
		{name: "oversized event", wait: true, ready: func(testing.TB) []byte {
			return []byte{0x01, 0xff, 0xff, 0xff, 0x7f}
		}},
		{name: "undecodable event", wait: true, ready: func(testing.TB) []byte {
			return []byte{0x01, 0x02, 0x00, 0x00, 0x00, 0xff, 0xff}
		}},
		{name: "truncated event", ready: func(t testing.TB) []byte {
			b := goodReady(t)
			return b[:len(b)-3]
		}},
		{name: "ready timeout", wait: true, opts: []Option{ReadyTimeout(50 * time.Millisecond)}},
		{name: "no token", reply: func(fb *fakeBroker, hf *pb.Frame) []byte {
			return replyBytes(fb.t, hf, negotiated(fb.pipeOf(), nil, 0))
		}},
		{name: "token without capability", wait: true, reply: func(fb *fakeBroker, hf *pb.Frame) []byte {
			return replyBytes(fb.t, hf, negotiated(fb.pipeOf(), testToken, 0))
		}},
		{name: "short token", wait: true, reply: func(fb *fakeBroker, hf *pb.Frame) []byte {
			return replyBytes(fb.t, hf, negotiated(fb.pipeOf(), testToken[:8], wire.CapHandlePassing))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(fb *fakeBroker, c net.Conn, hf *pb.Frame, _ *pb.Hello) {
				if tc.reply != nil {
					write(c, tc.reply(fb, hf))
				} else {
					write(c, handoffReply(fb.t, hf, fb.pipeOf()))
				}
				if tc.ready != nil {
					write(c, tc.ready(fb.t))
				}
				if tc.wait {
					drain(c)
				}
			})
			opts := append([]Option{Socket(e.fb.sock), EarlyData([]byte("REQ1"))}, tc.opts...)
			c, err := Dial(t.Context(), "echo", opts...)
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			if c.Route() != Reconnect || c.ConnectionID() != testConnID || c.BackendPipe() != e.rec.path {
				t.Fatalf("route %v id %d pipe %q", c.Route(), c.ConnectionID(), c.BackendPipe())
			}
			if got := readString(t, c, 2); got != "B>" {
				t.Fatalf("got %q from backend_pipe", got)
			}
			if _, err := c.Write([]byte("more")); err != nil {
				t.Fatal(err)
			}
			endWrites(t, c)
			if rec := e.rec.next(t); rec.idx != 0 || rec.data != "REQ1more" {
				t.Fatalf("backend_pipe connection #%d got %q, want #0 REQ1more", rec.idx, rec.data)
			}
		})
	}
}

func TestNoHandoff(t *testing.T) {
	e := newEnv(t, func(fb *fakeBroker, c net.Conn, hf *pb.Frame, h *pb.Hello) {
		if h.GetClientCapabilities()&wire.CapHandlePassing != 0 {
			fb.t.Errorf("NoHandoff client sent CAP_HANDLE_PASSING: capabilities %#x", h.GetClientCapabilities())
		}
		write(c, replyBytes(fb.t, hf, negotiated(fb.pipeOf(), nil, 0)))
	})
	c, err := Dial(t.Context(), "echo", Socket(e.fb.sock), NoHandoff())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Route() != Reconnect {
		t.Fatalf("route %v", c.Route())
	}
	readString(t, c, 2)
	_ = c.Close()
	if rec := e.rec.next(t); rec.data != "" {
		t.Fatalf("backend got %q without early data", rec.data)
	}
}

func TestRefusals(t *testing.T) {
	all := []error{ErrVersionUnsupported, ErrServiceUnknown, ErrSpawnFailed, ErrRateLimited, ErrShuttingDown,
		ErrPeerRejected, ErrInternal, ErrVersionBlocked, ErrFDPressure, ErrDefinitionInvalid, ErrServicesDirUnsafe}
	cases := []struct {
		code pb.ErrorCode
		want error
	}{
		{pb.ErrorCode_ERROR_VERSION_UNSUPPORTED, ErrVersionUnsupported},
		{pb.ErrorCode_ERROR_SERVICE_UNKNOWN, ErrServiceUnknown},
		{pb.ErrorCode_ERROR_BACKEND_SPAWN_FAILED, ErrSpawnFailed},
		{pb.ErrorCode_ERROR_RATE_LIMITED, ErrRateLimited},
		{pb.ErrorCode_ERROR_SHUTTING_DOWN, ErrShuttingDown},
		{pb.ErrorCode_ERROR_PEER_REJECTED, ErrPeerRejected},
		{pb.ErrorCode_ERROR_INTERNAL, ErrInternal},
		{pb.ErrorCode_ERROR_VERSION_BLOCKED, ErrVersionBlocked},
		{pb.ErrorCode_ERROR_FD_PRESSURE, ErrFDPressure},
		{pb.ErrorCode_ERROR_DEFINITION_INVALID, ErrDefinitionInvalid},
		{pb.ErrorCode_ERROR_SERVICES_DIR_UNSAFE, ErrServicesDirUnsafe},
		{pb.ErrorCode_ERROR_CODE_UNSPECIFIED, nil},
		{pb.ErrorCode(15), nil},
	}
	for _, tc := range cases {
		t.Run(tc.code.String(), func(t *testing.T) {
			e := newEnv(t, func(fb *fakeBroker, c net.Conn, hf *pb.Frame, _ *pb.Hello) {
				r := wire.NewRefused(tc.code, "because", 1500*time.Millisecond, map[string]string{"field": "service_name"})
				write(c, replyBytes(fb.t, hf, &pb.HelloReply{Result: &pb.HelloReply_Refused{Refused: r}}))
			})
			c, err := Dial(t.Context(), "echo", Socket(e.fb.sock), EarlyData([]byte("REQ1")))
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			var re *RefusedError
			if !errors.As(err, &re) {
				t.Fatalf("error %v (%T) is not a *RefusedError", err, err)
			}
			if re.Code != wire.ErrorCode(tc.code) || re.Reason != "because" || re.RetryAfter != 1500*time.Millisecond ||
				re.Details["field"] != "service_name" {
				t.Fatalf("refusal %+v", re)
			}
			for _, s := range all {
				if got := errors.Is(err, s); got != (s == tc.want) {
					t.Errorf("errors.Is(%v, %v) = %v", err, s, got)
				}
			}
			if errors.Is(err, ErrBrokerUnavailable) || errors.Is(err, ErrProtocol) {
				t.Errorf("refusal %v matches a non-refusal sentinel", err)
			}
			e.rec.assertUntouched(t)
		})
	}
}

// TestRefusalWithoutRequestID: a broker that could not parse the Hello
// does not know its request id and refuses with 0.
func TestRefusalWithoutRequestID(t *testing.T) {
	e := newEnv(t, func(fb *fakeBroker, c net.Conn, hf *pb.Frame, _ *pb.Hello) {
		b := replyBytes(fb.t, &pb.Frame{}, &pb.HelloReply{Result: &pb.HelloReply_Refused{
			Refused: wire.NewRefused(pb.ErrorCode_ERROR_PEER_REJECTED, "too large", 0, nil)}})
		write(c, b)
	})
	_, err := Dial(t.Context(), "echo", Socket(e.fb.sock))
	if !errors.Is(err, ErrPeerRejected) {
		t.Fatalf("got %v", err)
	}
	var re *RefusedError
	if errors.As(err, &re) && re.RetryAfter != 0 {
		t.Fatalf("retry after %v", re.RetryAfter)
	}
}

func TestBrokerMissing(t *testing.T) {
	fdcount.Check(t)
	dir := newDir(t)
	t.Run("no socket", func(t *testing.T) {
		_, err := Dial(t.Context(), "echo", Socket(endpointIn(dir, "none")))
		if !errors.Is(err, ErrBrokerMissing) || !errors.Is(err, ErrBrokerUnavailable) || !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("got %v, want ErrBrokerMissing, ErrBrokerUnavailable and os.ErrNotExist", err)
		}
	})
	// A socket file nobody accepts on; on Windows a pipe that lives on only
	// through instances a broker handed out before it exited.
	t.Run("stale endpoint", func(t *testing.T) {
		sock := staleEndpoint(t, dir)
		_, err := Dial(t.Context(), "echo", Socket(sock), HandshakeTimeout(ioTimeout))
		if !errors.Is(err, ErrBrokerMissing) || !errors.Is(err, ErrBrokerUnavailable) {
			t.Fatalf("got %v, want ErrBrokerMissing and ErrBrokerUnavailable", err)
		}
	})
	t.Run("default path from PORTIER_SOCKET", func(t *testing.T) {
		sock := endpointIn(dir, "env")
		t.Setenv(ipc.EnvSocket, sock)
		_, err := Dial(t.Context(), "echo")
		if !errors.Is(err, ErrBrokerMissing) || !strings.Contains(err.Error(), sock) {
			t.Fatalf("got %v, want ErrBrokerMissing naming %s", err, sock)
		}
	})
}

// TestProtocolErrors: a broker that breaks the protocol before or in its
// reply is an error (there is no backend_pipe to fall back to yet).
func TestProtocolErrors(t *testing.T) {
	cases := []struct {
		name  string
		reply func(fb *fakeBroker, hf *pb.Frame) []byte
		is    error
	}{
		{name: "eof before reply", reply: func(*fakeBroker, *pb.Frame) []byte { return nil }, is: io.EOF},
		{name: "truncated reply", reply: func(fb *fakeBroker, hf *pb.Frame) []byte {
			b := handoffReply(fb.t, hf, fb.pipeOf())
			return b[:len(b)-1]
		}, is: io.ErrUnexpectedEOF},
		{name: "bad framing byte", reply: func(*fakeBroker, *pb.Frame) []byte {
			return []byte{0x07, 0, 0, 0, 0}
		}, is: wire.ErrBadFramingVersion},
		{name: "oversized reply", reply: func(*fakeBroker, *pb.Frame) []byte {
			return []byte{0x01, 0, 0, 0, 0x01}
		}, is: wire.ErrFrameTooLarge},
		{name: "wrong request id", reply: func(fb *fakeBroker, hf *pb.Frame) []byte {
			return replyBytes(fb.t, &pb.Frame{RequestId: hf.GetRequestId() + 1}, negotiated(fb.pipeOf(), nil, 0))
		}},
		{name: "event instead of reply", reply: func(fb *fakeBroker, hf *pb.Frame) []byte {
			return readyBytes(fb.t, pb.FrameKind_FRAME_KIND_EVENT, hf.GetRequestId(), &pb.HandoffAck{})
		}},
		{name: "empty reply", reply: func(fb *fakeBroker, hf *pb.Frame) []byte {
			return replyBytes(fb.t, hf, &pb.HelloReply{})
		}},
		{name: "undecodable reply", reply: func(fb *fakeBroker, hf *pb.Frame) []byte {
			f, _ := wire.NewResponse(hf, wire.ProtocolControl, &pb.HelloReply{})
			f.Payload = []byte{0xff, 0xff}
			b, _ := wire.EncodeFrame(f)
			return b
		}},
		{name: "other protocol version", reply: func(fb *fakeBroker, hf *pb.Frame) []byte {
			r := negotiated(fb.pipeOf(), nil, 0)
			r.GetNegotiated().NegotiatedProtocol = 2
			return replyBytes(fb.t, hf, r)
		}},
		{name: "no backend_pipe", reply: func(fb *fakeBroker, hf *pb.Frame) []byte {
			return replyBytes(fb.t, hf, negotiated("", nil, 0))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(fb *fakeBroker, c net.Conn, hf *pb.Frame, _ *pb.Hello) {
				if b := tc.reply(fb, hf); len(b) > 0 {
					write(c, b)
				}
			})
			// No early data: a peer that closes with unread bytes makes the
			// kernel report ECONNRESET instead of EOF.
			c, err := Dial(t.Context(), "echo", Socket(e.fb.sock))
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			var pe *ProtocolError
			if !errors.As(err, &pe) || !errors.Is(err, ErrProtocol) {
				t.Fatalf("got %v (%T), want a *ProtocolError", err, err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("got %v, want it to match %v", err, tc.is)
			}
			if errors.Is(err, ErrBrokerUnavailable) {
				t.Fatalf("%v matches ErrBrokerUnavailable", err)
			}
			if n := e.fb.hellos.Load(); n != 1 {
				t.Fatalf("%d Hellos, want 1", n)
			}
		})
	}
}

// TestZeroRTTNoReplyRehello: a connection that ends before any reply (the
// 0-RTT handoff failed after the broker sent the offer, and the backend
// never wrote Negotiated) is answered with a fresh Hello without the
// handoff capabilities but with CapAnyVersion and CapRefusalCodes,
// carrying the early data: the client is served on the reconnect route,
// its early data read once. The end may be EOF, a reply cut short, or
// ECONNRESET (the early data unread).
// A client without CAP_PORTIER_0RTT (without early data, or NoHandoff)
// takes the same end for a broken broker.
func TestZeroRTTNoReplyRehello(t *testing.T) {
	ends := map[string]func(fb *fakeBroker, c net.Conn, hf *pb.Frame){
		"eof, early data read": func(_ *fakeBroker, c net.Conn, _ *pb.Frame) {
			var b [4]byte
			_, _ = io.ReadFull(c, b[:])
		},
		"reset, early data unread": func(*fakeBroker, net.Conn, *pb.Frame) {},
		"reply cut short": func(fb *fakeBroker, c net.Conn, hf *pb.Frame) {
			b := handoffReply(fb.t, hf, fb.pipeOf())
			write(c, b[:len(b)/2])
		},
	}
	for name, end := range ends {
		t.Run(name, func(t *testing.T) {
			var e *testEnv
			e = newEnv(t, func(fb *fakeBroker, c net.Conn, hf *pb.Frame, h *pb.Hello) {
				caps := h.GetClientCapabilities()
				if fb.hellos.Load() == 1 {
					if caps&(wire.CapHandlePassing|wire.CapZeroRTT) != wire.CapHandlePassing|wire.CapZeroRTT {
						fb.t.Errorf("first Hello without 0-RTT (caps %#x)", caps)
					}
					end(fb, c, hf)
					return
				}
				if caps != wire.CapAnyVersion|wire.CapRefusalCodes {
					fb.t.Errorf("the fresh Hello has capabilities %#x, want CapAnyVersion and CapRefusalCodes alone", caps)
				}
				write(c, replyBytes(fb.t, hf, negotiated(e.rec.path, nil, 0)))
			})
			c, err := Dial(t.Context(), "echo", Socket(e.fb.sock), EarlyData([]byte("REQ1")))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := readString(t, c, 2); got != "B>" {
				t.Fatalf("read %q, want the backend's B>", got)
			}
			if c.Route() != Reconnect || e.fb.hellos.Load() != 2 {
				t.Fatalf("route %v after %d Hellos, want reconnect after 2", c.Route(), e.fb.hellos.Load())
			}
			endWrites(t, c)
			if rec := e.rec.next(t); rec.data != "REQ1" {
				t.Fatalf("backend got %q, want the early data once", rec.data)
			}
		})
	}
	for name, opts := range map[string][]Option{"without early data": nil, "NoHandoff": {NoHandoff(), EarlyData([]byte("REQ1"))}} {
		t.Run("without 0-RTT, "+name, func(t *testing.T) {
			e := newEnv(t, func(fb *fakeBroker, _ net.Conn, _ *pb.Frame, h *pb.Hello) {
				if caps := h.GetClientCapabilities(); caps&wire.CapZeroRTT != 0 {
					fb.t.Errorf("Hello with CAP_PORTIER_0RTT (caps %#x)", caps)
				}
			})
			_, err := Dial(t.Context(), "echo", append(opts, Socket(e.fb.sock))...)
			if !errors.Is(err, ErrProtocol) || e.fb.hellos.Load() != 1 {
				t.Fatalf("got %v after %d Hellos, want a protocol error after 1", err, e.fb.hellos.Load())
			}
		})
	}
}

func TestBackendUnavailable(t *testing.T) {
	gone := endpointIn(newDir(t), "gone")
	e := newEnv(t, func(fb *fakeBroker, c net.Conn, hf *pb.Frame, _ *pb.Hello) {
		write(c, replyBytes(fb.t, hf, negotiated(gone, nil, 0)))
	})
	_, err := Dial(t.Context(), "echo", Socket(e.fb.sock))
	if !errors.Is(err, ErrBackendUnavailable) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v", err)
	}
}

func TestInvalidArgument(t *testing.T) {
	for _, tc := range []struct {
		service string
		opts    []Option
	}{
		{"", nil},
		{"Echo", nil},
		{"echo", []Option{Version("1.2")}},
		{"echo", []Option{Version("v1.2.3")}},
		{"echo", []Option{TraceParent("\xff\xfe")}},
		{"echo", []Option{TraceParent(strings.Repeat("0", 513))}},
		// A broker drops an invalid traceparent, so the client refuses to
		// send one rather than lose it silently.
		{"echo", []Option{TraceParent(strings.ToUpper(traceParent))}},
		{"echo", []Option{TraceParent(traceParent + "\x00")}},
		{"echo", []Option{TraceParent(traceParent[:3] + strings.Repeat("0", 32) + traceParent[35:])}},
		{"echo", []Option{TraceParent("not-a-traceparent")}},
	} {
		_, err := Dial(t.Context(), tc.service, append(tc.opts, Socket("/nonexistent/broker.sock"))...)
		if !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("Dial(%q): got %v, want ErrInvalidArgument", tc.service, err)
		}
	}
}

func TestContextCancelled(t *testing.T) {
	t.Run("before dial", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := Dial(ctx, "echo", Socket("/nonexistent/broker.sock"))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
	})
	for _, stage := range []string{"awaiting reply", "awaiting ready event", "writing early data"} {
		t.Run(stage, func(t *testing.T) {
			release := make(chan struct{})
			defer close(release)
			e := newEnv(t, func(fb *fakeBroker, c net.Conn, hf *pb.Frame, _ *pb.Hello) {
				switch stage {
				case "awaiting ready event":
					write(c, handoffReply(fb.t, hf, fb.pipeOf()))
				case "writing early data":
					// Read nothing past the Hello: the client's write of
					// its early data stays blocked.
					<-release
					return
				}
				drain(c)
			})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			type result struct {
				c   *Conn
				err error
			}
			done := make(chan result, 1)
			go func() {
				// Without AwaitReady, Dial does not wait for the ready event
				// at all (the route settles on first use).
				// Timeouts far beyond the wait below: only ctx can end
				// the Dial in time.
				opts := []Option{Socket(e.fb.sock), HandshakeTimeout(3 * ioTimeout), ReadyTimeout(3 * ioTimeout), AwaitReady()}
				if stage == "writing early data" {
					opts = append(opts, EarlyData(make([]byte, bigEarlyData)))
				}
				c, err := Dial(ctx, "echo", opts...)
				done <- result{c, err}
			}()
			<-e.fb.helloSeen
			cancel()
			var r result
			select {
			case r = <-done:
			case <-time.After(ioTimeout):
				t.Fatal("cancelling ctx did not interrupt the Dial")
			}
			if r.c != nil {
				r.c.Close()
			}
			if !errors.Is(r.err, context.Canceled) {
				t.Fatalf("got %v, want context.Canceled", r.err)
			}
			e.rec.assertUntouched(t)
		})
	}
}

// bigEarlyData is more early data than any socket or pipe buffer holds, so
// that writing it blocks until the peer reads.
const bigEarlyData = 4 << 20

// TestHandshakeTimeout: HandshakeTimeout alone (ctx has no deadline) ends
// a Dial whose broker never answers, whether it reads nothing past the
// Hello or the client is still writing its early data.
func TestHandshakeTimeout(t *testing.T) {
	for _, early := range []int{0, bigEarlyData} {
		t.Run(fmt.Sprintf("early data %d", early), func(t *testing.T) {
			release := make(chan struct{})
			defer close(release)
			e := newEnv(t, func(fb *fakeBroker, c net.Conn, hf *pb.Frame, _ *pb.Hello) { <-release })
			opts := []Option{Socket(e.fb.sock), HandshakeTimeout(300 * time.Millisecond)}
			if early > 0 {
				opts = append(opts, EarlyData(make([]byte, early)))
			}
			_, err := Dial(context.Background(), "echo", opts...)
			if !errors.Is(err, ErrProtocol) || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("got %v, want a protocol error matching os.ErrDeadlineExceeded", err)
			}
		})
	}
}

func TestHelloSkip(t *testing.T) {
	e := newEnv(t, func(fb *fakeBroker, c net.Conn, hf *pb.Frame, _ *pb.Hello) {
		write(c, replyBytes(fb.t, hf, negotiated(fb.pipeOf(), nil, 0)))
	})
	dial := func(early string, opts ...Option) *Conn {
		t.Helper()
		c, err := Dial(t.Context(), "echo", append(opts, Socket(e.fb.sock), HelloSkip(), EarlyData([]byte(early)))...)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	finish := func(c *Conn, r *recorder, want string) {
		t.Helper()
		if got := readString(t, c, 2); got != "B>" {
			t.Fatalf("got %q", got)
		}
		_ = c.Close()
		if rec := r.next(t); rec.data != want {
			t.Fatalf("backend got %q, want %q", rec.data, want)
		}
	}

	// First dial: full Hello, fills the cache.
	c := dial("one")
	if c.Route() != Reconnect || e.fb.hellos.Load() != 1 {
		t.Fatalf("first dial: route %v, %d hellos", c.Route(), e.fb.hellos.Load())
	}
	finish(c, e.rec, "one")

	// Second: straight to the cached backend_pipe, no Hello.
	c = dial("two")
	if c.Route() != Direct || c.ConnectionID() != 0 || c.BackendPipe() != e.rec.path || c.DaemonVersion() != "1.2.3" {
		t.Fatalf("second dial: route %v id %d pipe %q version %q", c.Route(), c.ConnectionID(), c.BackendPipe(), c.DaemonVersion())
	}
	if n := e.fb.hellos.Load(); n != 1 {
		t.Fatalf("direct route sent a Hello (%d in all)", n)
	}
	finish(c, e.rec, "two")

	// A different version is a different entry: full Hello.
	c = dial("three", Version("2.0.0"))
	if c.Route() != Reconnect || e.fb.hellos.Load() != 2 {
		t.Fatalf("other version: route %v, %d hellos", c.Route(), e.fb.hellos.Load())
	}
	finish(c, e.rec, "three")

	// The backend goes away and another takes over: the stale entry falls
	// back to a full Hello silently, and the new pipe is cached.
	e.rec.close()
	rec2 := startRecorder(t, e.dir, "backend2")
	e.fb.pipe.Store(rec2.path)
	c = dial("four")
	if c.Route() != Reconnect || c.BackendPipe() != rec2.path || e.fb.hellos.Load() != 3 {
		t.Fatalf("stale entry: route %v pipe %q, %d hellos", c.Route(), c.BackendPipe(), e.fb.hellos.Load())
	}
	finish(c, rec2, "four")
	c = dial("five")
	if c.Route() != Direct || c.BackendPipe() != rec2.path {
		t.Fatalf("refreshed entry: route %v pipe %q", c.Route(), c.BackendPipe())
	}
	finish(c, rec2, "five")
	if n := e.fb.hellos.Load(); n != 3 {
		t.Fatalf("%d hellos", n)
	}

	// The cache is on by default.
	c, err := Dial(t.Context(), "echo", Socket(e.fb.sock))
	if err != nil {
		t.Fatal(err)
	}
	if c.Route() != Direct {
		t.Fatalf("default options: route %v, want direct", c.Route())
	}
	finish(c, rec2, "")

	// NoHelloSkip neither consults the cache nor fills it.
	c, err = Dial(t.Context(), "echo", Socket(e.fb.sock), NoHelloSkip())
	if err != nil {
		t.Fatal(err)
	}
	if c.Route() != Reconnect || e.fb.hellos.Load() != 4 {
		t.Fatalf("NoHelloSkip: route %v, %d hellos", c.Route(), e.fb.hellos.Load())
	}
	finish(c, rec2, "")
	skipCache.Delete(cacheKey{socket: e.fb.sock, service: "echo"})
	c, err = Dial(t.Context(), "echo", Socket(e.fb.sock), NoHelloSkip())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, ok := skipCache.Load(cacheKey{socket: e.fb.sock, service: "echo"}); ok {
		t.Fatal("a Dial with NoHelloSkip filled the cache")
	}
}

func TestConcurrentDials(t *testing.T) {
	e := newEnv(t, adoptScript)
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			c, err := Dial(t.Context(), "echo", Socket(e.fb.sock), EarlyData([]byte("x")), NoHelloSkip())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if c.Route() != Handoff {
				errs <- errors.New("route " + c.Route().String())
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for range n {
		if got := e.fb.recvAdopted(t); got != "x" {
			t.Errorf("backend read %q", got)
		}
	}
}

func TestRouteString(t *testing.T) {
	for r, want := range map[Route]string{Handoff: "handoff", Reconnect: "reconnect", Direct: "direct", 0: "Route(0)"} {
		if r.String() != want {
			t.Errorf("%d: %q", r, r.String())
		}
	}
}

func TestRefusedErrorMessage(t *testing.T) {
	e := &RefusedError{Code: wire.CodeRateLimited, Reason: "slow down", RetryAfter: 2 * time.Second}
	if got, want := e.Error(), "portier: broker refused: RATE_LIMITED: slow down (retry after 2s)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	huge := refusedError(&pb.Refused{RetryAfterMs: 1 << 63})
	if huge.RetryAfter != 24*time.Hour {
		t.Errorf("hostile retry_after_ms became %v", huge.RetryAfter)
	}
}

// TestLastChance: after the ready timeout, a ready event already in the
// receive buffer is still found (and adopted) rather than replaying early
// data on the reconnect route; an empty buffer reads as EOF without waiting.
func TestLastChance(t *testing.T) {
	fdcount.Check(t)
	path := endpointIn(newDir(t), "s")
	ln, err := listenAt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		sc, _ := ln.Accept()
		accepted <- sc
	}()
	cc, err := dialEndpoint(t.Context(), path, time.Now().Add(ioTimeout))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	sc := <-accepted
	if sc == nil {
		t.Fatal("accept failed")
	}
	defer sc.Close()

	fr := &frameReader{r: cc, buf: make([]byte, readAheadSize)}
	_ = cc.SetReadDeadline(time.Unix(1, 0)) // as after the ready timeout
	if _, err := lastChance(cc, fr); !errors.Is(err, io.EOF) {
		t.Fatalf("empty buffer: %v", err)
	}
	write(sc, goodReady(t), []byte("x"))
	// The bytes are in cc's receive buffer once Write returns (local socket).
	_ = cc.SetReadDeadline(time.Unix(1, 0))
	ev, err := lastChance(cc, fr)
	if err != nil || !readyMatches(ev, testToken, testConnID) {
		t.Fatalf("ready event not found: %v %v", ev, err)
	}
	if string(fr.rest()) != "x" || fr.r != io.Reader(cc) {
		t.Fatalf("rest %q, reader restored %v", fr.rest(), fr.r == io.Reader(cc))
	}
}

// TestHelloWantedVersion: a Dial without Version never sends the empty
// wanted_version v1 forbids; it asks for any version with the portier
// extension bit. A Dial with Version sends exactly that, without the bit.
// Every Hello says the client knows portier's refusal codes.
// CAP_PORTIER_0RTT goes with the handoff capability when the client waits
// for the ready event anyway (EarlyData, AwaitReady).
func TestHelloWantedVersion(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     []Option
		wantVer  string
		wantCaps uint64
	}{
		{"no Version", nil, wire.AnyVersion, wire.CapHandlePassing | wire.CapAnyVersion | wire.CapRefusalCodes},
		{"empty Version", []Option{Version("")}, wire.AnyVersion, wire.CapHandlePassing | wire.CapAnyVersion | wire.CapRefusalCodes},
		{"no Version, no handoff", []Option{NoHandoff()}, wire.AnyVersion, wire.CapAnyVersion | wire.CapRefusalCodes},
		{"Version", []Option{Version("1.2.3")}, "1.2.3", wire.CapHandlePassing | wire.CapRefusalCodes},
		// 0-RTT when the client waits for the ready event anyway.
		{"EarlyData", []Option{EarlyData([]byte("x"))}, wire.AnyVersion, wire.CapHandlePassing | wire.CapZeroRTT | wire.CapAnyVersion | wire.CapRefusalCodes},
		{"AwaitReady", []Option{AwaitReady()}, wire.AnyVersion, wire.CapHandlePassing | wire.CapZeroRTT | wire.CapAnyVersion | wire.CapRefusalCodes},
		{"EarlyData, no handoff", []Option{EarlyData([]byte("x")), NoHandoff()}, wire.AnyVersion, wire.CapAnyVersion | wire.CapRefusalCodes},
		{"Version, no handoff", []Option{Version("1.2.3-rc.1"), NoHandoff()}, "1.2.3-rc.1", wire.CapRefusalCodes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(fb *fakeBroker, c net.Conn, hf *pb.Frame, _ *pb.Hello) {
				write(c, replyBytes(fb.t, hf, negotiated(fb.pipeOf(), nil, 0)))
				drain(c)
			})
			c, err := Dial(t.Context(), "echo", append(tc.opts, Socket(e.fb.sock), HandshakeTimeout(ioTimeout))...)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			// checkHello has validated the Hello as a broker does.
			_, h := e.fb.last()
			if h.GetWantedVersion() != tc.wantVer || h.GetClientCapabilities() != tc.wantCaps {
				t.Errorf("wanted_version %q capabilities %#x; want %q %#x",
					h.GetWantedVersion(), h.GetClientCapabilities(), tc.wantVer, tc.wantCaps)
			}
		})
	}
}
