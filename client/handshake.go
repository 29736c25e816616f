package client

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// Identification this library sends in every Hello.
const (
	// LibName is sent as Hello.client_lib_name.
	LibName = "portier-go"
	// LibVersion is sent as Hello.client_lib_version.
	LibVersion = "0.1.0"
)

const (
	// maxReplyBody caps the broker's reply and the ready event. Both are a
	// few hundred bytes at most; the cap keeps a confused peer from making
	// the client allocate up to wire.MaxBody.
	maxReplyBody = wire.MaxHelloBody
	// readAheadSize is the read-ahead buffer: room for Negotiated, the ready
	// event and the backend's first reply in one read.
	readAheadSize = 2048
)

var (
	frameIDs atomic.Uint64
	// idPrefix makes Hello.request_id unique across processes without a
	// random read per Dial.
	idPrefix = sync.OnceValue(func() string {
		var b [4]byte
		_, _ = rand.Read(b[:]) // never fails since Go 1.24
		return hex.EncodeToString(b[:])
	})
)

// A process's pid does not change (Go programs do not fork without exec),
// and reading it per Dial cost a syscall.
var selfPID = uint32(os.Getpid())

// newHello builds the Hello of a Dial and the request id of its frame.
func newHello(service string, cfg config) (*pb.Hello, uint64) {
	frameID := frameIDs.Add(1)
	wanted, caps := cfg.wantedVersion()
	caps |= wire.CapRefusalCodes
	if !cfg.noHandoff {
		caps |= wire.CapHandlePassing
		if cfg.zeroRTT() {
			caps |= wire.CapZeroRTT
		}
	}
	return &pb.Hello{
		ClientMinProtocol:  wire.ProtocolVersion,
		ClientMaxProtocol:  wire.ProtocolVersion,
		ServiceName:        service,
		WantedVersion:      wanted,
		ClientCapabilities: caps,
		RequestId:          idPrefix() + "-" + strconv.FormatUint(frameID, 16),
		PeerPid:            selfPID,
		ClientLibName:      LibName,
		ClientLibVersion:   LibVersion,
	}, frameID
}

// checkHello runs the broker's validation of h (and of the traceparent the
// frame will carry) before any connection is made.
func checkHello(h *pb.Hello, cfg config) error {
	if r := wire.ValidateHello(h, 0); r != nil {
		return fmt.Errorf("%w: %s", ErrInvalidArgument, r.GetReason())
	}
	if tp := cfg.traceParent; tp != "" && !wire.ValidTraceparent(tp) {
		return fmt.Errorf("%w: traceparent %.80q is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>, lowercase, ids not all zero)", ErrInvalidArgument, tp)
	}
	return nil
}

// exchange is the broker's answer to one Hello.
type exchange struct {
	neg *pb.Negotiated
	// fr holds what was read past the reply: possibly the ready event and
	// the backend's first bytes.
	fr *frameReader
	// earlyComplete: every early-data byte went out with the Hello. A
	// failed early-data write (the broker closed before the backend took
	// the socket) rules out adopting: the backend would see half a request.
	earlyComplete bool
}

// handoff reports whether the reply announces a handoff this client takes:
// the capability, a 16-byte token and a connection id, with the early data
// all written.
func (x exchange) handoff(cfg config) bool {
	return !cfg.noHandoff && x.earlyComplete &&
		x.neg.GetServerCapabilities()&wire.CapHandlePassing != 0 &&
		len(x.neg.GetHandlePassedToken()) == wire.TokenLen && x.neg.GetConnectionId() != 0
}

// handshake writes the Hello, with the early data in the same write, on bc
// and reads the broker's reply, all under HandshakeTimeout and ctx. The
// broker reads the Hello frame exactly and leaves the early data in the
// socket for the backend. On error bc is closed; on success bc's deadline is
// still the handshake's.
func (d *dialer) handshake(bc osConn) (exchange, error) {
	deadline := d.deadline(d.cfg.handshakeTimeout)
	f, err := wire.NewRequest(wire.ProtocolControl, d.frameID, d.helloMsg)
	if err != nil {
		_ = bc.Close()
		return exchange{}, fmt.Errorf("portier: encode hello: %w", err)
	}
	f.Traceparent = d.cfg.traceParent
	f.DeadlineUnixMs = uint64(helloDeadline(deadline, time.Now()).UnixMilli())
	buf, err := wire.AppendFrame(make([]byte, 0, 256+len(d.cfg.earlyData)), f)
	if err != nil {
		_ = bc.Close()
		return exchange{}, fmt.Errorf("portier: encode hello: %w", err)
	}
	helloLen := len(buf)
	buf = append(buf, d.cfg.earlyData...)

	_ = bc.SetDeadline(deadline)
	stop := d.watch(bc)
	fail := func(err error) (exchange, error) {
		_ = bc.Close()
		if !stop() || d.ctxDone() {
			return exchange{}, d.ctxErr()
		}
		return exchange{}, err
	}
	n, werr := bc.Write(buf)
	if n < helloLen {
		// A broker that refuses before reading (out of descriptors,
		// shutting down) closes at once: its answer is still readable.
		fr := &frameReader{r: bc, buf: make([]byte, readAheadSize)}
		if rf, err := fr.next(maxReplyBody); err == nil {
			var re *RefusedError
			if _, err := parseReply(rf, d.frameID); errors.As(err, &re) {
				return fail(err)
			}
		}
		return fail(&ProtocolError{Op: "write hello", Err: werr})
	}
	fr := &frameReader{r: bc, buf: make([]byte, readAheadSize)}
	rf, err := fr.next(maxReplyBody)
	if err != nil {
		if d.helloMsg.GetClientCapabilities()&wire.CapZeroRTT != 0 && connectionEnded(err) {
			return fail(errNoReply)
		}
		return fail(&ProtocolError{Op: "read hello reply", Err: err})
	}
	neg, err := parseReply(rf, d.frameID)
	if err != nil {
		return fail(err)
	}
	if !stop() {
		_ = bc.Close()
		return exchange{}, d.ctxErr()
	}
	return exchange{neg: neg, fr: fr, earlyComplete: werr == nil}, nil
}

// errNoReply: the connection of a Hello with CAP_PORTIER_0RTT ended before
// a HelloReply arrived. Against a portier broker that is a 0-RTT handoff
// that failed after the broker sent the offer (the backend rejected it,
// died, or never answered), and the broker has written nothing: the
// backend writes Negotiated only once it adopted the connection, together
// with the ready event, and before its application reads a byte. So no
// application read the early data, and Dial sends a fresh Hello without
// the handoff capabilities, replaying it (rehello).
var errNoReply = errors.New("portier: the broker's connection ended before its reply")

// connectionEnded reports whether a read error means the peer closed or
// reset the connection: EOF, a frame cut short, or ECONNRESET (what Linux
// reports when the last holder of the other end closed it with bytes of
// ours unread, the early data of a 0-RTT handoff that failed).
func connectionEnded(err error) bool {
	var te *wire.TruncatedError
	return errors.Is(err, io.EOF) || errors.As(err, &te) || errors.Is(err, syscall.ECONNRESET)
}

// maxReplyLead is the most by which the deadline a Hello tells the broker
// comes before the client's own.
const maxReplyLead = 250 * time.Millisecond

// helloDeadline is the deadline_unix_ms of a Hello whose reply the client
// reads until deadline: a tenth of the time left, at most maxReplyLead,
// earlier. The broker answers a Hello still waiting for its backend at the
// deadline it was told; told the client's own, its refusal would arrive
// just as the client stopped reading, and the caller would see an i/o
// timeout instead of the reason.
func helloDeadline(deadline, now time.Time) time.Time {
	left := deadline.Sub(now)
	if left <= 0 {
		return deadline
	}
	return deadline.Add(-min(maxReplyLead, left/10))
}

// parseReply checks that f is the HelloReply to the Hello sent as frameID and
// returns its Negotiated, or the refusal as a *RefusedError.
func parseReply(f *pb.Frame, frameID uint64) (*pb.Negotiated, error) {
	if f.GetKind() != pb.FrameKind_FRAME_KIND_RESPONSE || f.GetPayloadProtocol() != wire.ProtocolControl {
		return nil, &ProtocolError{Op: "read hello reply", Err: fmt.Errorf(
			"got a %s frame of payload protocol 0x%04x, want a control RESPONSE", f.GetKind(), f.GetPayloadProtocol())}
	}
	reply, err := wire.DecodeHelloReply(f.GetPayload())
	if err != nil {
		return nil, &ProtocolError{Op: "decode hello reply", Err: err}
	}
	id := f.GetRequestId()
	switch r := reply.GetResult().(type) {
	case *pb.HelloReply_Refused:
		// A broker that could not parse the Hello does not know its id.
		if id != frameID && id != 0 {
			return nil, &ProtocolError{Op: "read hello reply", Err: fmt.Errorf("refusal answers request %d, not %d", id, frameID)}
		}
		return nil, refusedError(r.Refused)
	case *pb.HelloReply_Negotiated:
		if id != frameID {
			return nil, &ProtocolError{Op: "read hello reply", Err: fmt.Errorf("reply answers request %d, not %d", id, frameID)}
		}
		if p := r.Negotiated.GetNegotiatedProtocol(); p != wire.ProtocolVersion {
			return nil, &ProtocolError{Op: "negotiated", Err: fmt.Errorf("broker negotiated protocol %d; this client speaks %d", p, wire.ProtocolVersion)}
		}
		return r.Negotiated, nil
	}
	return nil, &ProtocolError{Op: "decode hello reply", Err: fmt.Errorf("unexpected HelloReply result %T", reply.GetResult())}
}

// readyMatches reports whether f is the handoff-ready event for this
// connection: an EVENT of the handoff protocol for connID whose HandoffAck
// accepts, echoes connID and carries our token (compared in constant time).
func readyMatches(f *pb.Frame, token []byte, connID uint64) bool {
	if f.GetKind() != pb.FrameKind_FRAME_KIND_EVENT || f.GetPayloadProtocol() != wire.ProtocolHandoff ||
		f.GetRequestId() != connID {
		return false
	}
	ack, err := wire.DecodeHandoffAck(f.GetPayload())
	if err != nil {
		return false
	}
	tokenOK := subtle.ConstantTimeCompare(ack.GetToken(), token) == 1
	return ack.GetAccepted() && tokenOK && ack.GetCorrelationId() == connID
}
