package client

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/portier/portier/internal/ipc"
	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
	"google.golang.org/protobuf/proto"
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
	// maxTraceParent bounds the caller's traceparent; a W3C version-00
	// traceparent is 55 bytes, later versions may append fields.
	maxTraceParent = 512
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

// dialer carries one Dial's state.
type dialer struct {
	ctx     context.Context
	cfg     config
	service string
	sock    string
	// helloMsg is the Hello this dial sends, kept for rehello.
	helloMsg *pb.Hello
	rehellos int
}

// Dial connects to service through the broker and returns a connection
// served by its backend, on the handoff, reconnect or direct route (see the
// package documentation).
//
// Errors: ErrInvalidArgument (bad service name or Version),
// ErrBrokerUnavailable (no broker; with AutoStart, none came up in time),
// *RefusedError (matches ErrServiceUnknown, ErrVersionBlocked, ... with
// errors.Is), *ProtocolError (the broker broke the protocol before or in
// its reply, including closing the connection without a reply),
// ErrBackendUnavailable (backend_pipe could not be dialed), or ctx.Err()
// wrapped when ctx ends first. A handoff that does not complete is never an
// error.
//
// ctx bounds Dial itself. Unless AwaitReady is given, Dial returns once the
// broker's Negotiated announces a handoff and the route settles on first use
// (see Conn); that settlement is bounded by ReadyTimeout and
// HandshakeTimeout, not by ctx.
func Dial(ctx context.Context, service string, opts ...Option) (*Conn, error) {
	cfg := newConfig(opts)
	frameID := frameIDs.Add(1)
	caps := wire.CapHandlePassing
	if cfg.noHandoff {
		caps = 0
	}
	hello := &pb.Hello{
		ClientMinProtocol:  wire.ProtocolVersion,
		ClientMaxProtocol:  wire.ProtocolVersion,
		ServiceName:        service,
		WantedVersion:      cfg.version,
		ClientCapabilities: caps,
		RequestId:          idPrefix() + "-" + strconv.FormatUint(frameID, 16),
		PeerPid:            selfPID,
		ClientLibName:      LibName,
		ClientLibVersion:   LibVersion,
	}
	// The broker's own validation, run early: a caller's mistake should not
	// cost a connection or start a broker.
	if r := wire.ValidateHello(hello, 0); r != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalidArgument, r.GetReason())
	}
	if tp := cfg.traceParent; len(tp) > maxTraceParent || !utf8.ValidString(tp) {
		return nil, fmt.Errorf("%w: traceparent must be valid UTF-8 of at most %d bytes", ErrInvalidArgument, maxTraceParent)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("portier: dial %s: %w", service, err)
	}
	sock := cfg.socket
	if sock == "" {
		var err error
		if sock, err = ipc.SocketPath(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBrokerUnavailable, err)
		}
	}
	d := &dialer{ctx: ctx, cfg: cfg, service: service, sock: sock, helloMsg: hello}
	if cfg.helloSkip {
		key := cacheKey{socket: sock, service: service, version: cfg.version}
		if v, ok := skipCache.Load(key); ok {
			c, err := d.direct(key, v.(cacheEntry))
			if c != nil || err != nil {
				return c, err
			}
			// The entry was stale and has been dropped: full Hello.
		}
	}
	return d.hello(hello, frameID)
}

// deadline returns now+t, or ctx's deadline when that is earlier.
func (d *dialer) deadline(t time.Duration) time.Time {
	dl := time.Now().Add(t)
	if cd, ok := d.ctx.Deadline(); ok && cd.Before(dl) {
		dl = cd
	}
	return dl
}

// ctxDone reports whether ctx has ended, counting a deadline that has passed
// even if ctx's own timer has not fired yet: socket deadlines derived from it
// can expire first.
func (d *dialer) ctxDone() bool {
	if d.ctx.Err() != nil {
		return true
	}
	dl, ok := d.ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

func (d *dialer) ctxErr() error {
	err := d.ctx.Err()
	if err == nil {
		err = context.DeadlineExceeded
	}
	return fmt.Errorf("portier: dial %s: %w", d.service, err)
}

// watch interrupts c's blocking I/O when ctx is cancelled. The returned stop
// reports false when the interruption happened or is under way, in which
// case c's deadlines are poisoned and the dial must end with ctx's error.
func (d *dialer) watch(c net.Conn) (stop func() bool) {
	if d.ctx.Done() == nil {
		return func() bool { return true }
	}
	return context.AfterFunc(d.ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
}

// writeEarly writes the early data, if any, under deadline.
func (d *dialer) writeEarly(c *net.UnixConn, deadline time.Time) (int, error) {
	if len(d.cfg.earlyData) == 0 {
		return 0, nil
	}
	// Deadline first, then the watch: the watch's poisoned deadline must not
	// be overwritten.
	_ = c.SetWriteDeadline(deadline)
	stop := d.watch(c)
	n, err := c.Write(d.cfg.earlyData)
	if !stop() {
		return n, d.ctxErr()
	}
	if err != nil {
		return n, err
	}
	if err := c.SetWriteDeadline(time.Time{}); err != nil {
		return n, err
	}
	return n, nil
}

// direct dials a cached backend_pipe. It returns (nil, nil) when the entry
// is stale; the entry is then dropped and the caller does a full Hello.
func (d *dialer) direct(key cacheKey, e cacheEntry) (*Conn, error) {
	deadline := d.deadline(d.cfg.handshakeTimeout)
	uc, err := dialUnix(d.ctx, e.pipe, deadline)
	if err != nil {
		if d.ctxDone() {
			return nil, d.ctxErr()
		}
		skipCache.CompareAndDelete(key, e)
		return nil, nil
	}
	if n, err := d.writeEarly(uc, deadline); err != nil {
		_ = uc.Close()
		if d.ctxDone() {
			return nil, d.ctxErr()
		}
		skipCache.CompareAndDelete(key, e)
		if n == 0 {
			// Nothing reached the backend, so a full Hello may carry it.
			return nil, nil
		}
		return nil, fmt.Errorf("%w: write early data to %s: %w", ErrBackendUnavailable, e.pipe, err)
	}
	return newConn(uc, Direct, 0, e.pipe, e.daemonVersion, nil), nil
}

// hello runs the full exchange with the broker and then either adopts the
// connection or reconnects.
func (d *dialer) hello(hello *pb.Hello, frameID uint64) (*Conn, error) {
	bc, err := d.dialBroker()
	if err != nil {
		return nil, err
	}
	deadline := d.deadline(d.cfg.handshakeTimeout)
	f, err := wire.NewRequest(wire.ProtocolControl, frameID, hello)
	if err != nil {
		_ = bc.Close()
		return nil, fmt.Errorf("portier: encode hello: %w", err)
	}
	f.Traceparent = d.cfg.traceParent
	f.DeadlineUnixMs = uint64(deadline.UnixMilli())
	// One write carries the Hello and the early data: the broker reads the
	// Hello frame exactly and leaves the rest in the socket for the backend.
	buf, err := wire.AppendFrame(make([]byte, 0, 256+len(d.cfg.earlyData)), f)
	if err != nil {
		_ = bc.Close()
		return nil, fmt.Errorf("portier: encode hello: %w", err)
	}
	helloLen := len(buf)
	buf = append(buf, d.cfg.earlyData...)

	_ = bc.SetDeadline(deadline)
	stop := d.watch(bc)
	fail := func(err error) (*Conn, error) {
		_ = bc.Close()
		if !stop() || d.ctxDone() {
			return nil, d.ctxErr()
		}
		return nil, err
	}
	n, werr := bc.Write(buf)
	if n < helloLen {
		// A broker that refuses before reading (out of descriptors,
		// shutting down) closes at once: its answer is still readable.
		fr := &frameReader{r: bc, buf: make([]byte, readAheadSize)}
		if rf, err := fr.next(maxReplyBody); err == nil {
			var re *RefusedError
			if _, err := parseReply(rf, frameID); errors.As(err, &re) {
				return fail(err)
			}
		}
		return fail(&ProtocolError{Op: "write hello", Err: werr})
	}
	// A failed early-data write (the broker closed before the backend took
	// the socket) rules out adopting: the backend would see half a request.
	// The reply may still be readable, and the reconnect route carries the
	// whole early data again.
	earlyComplete := werr == nil

	fr := &frameReader{r: bc, buf: make([]byte, readAheadSize)}
	rf, err := fr.next(maxReplyBody)
	if err != nil {
		return fail(&ProtocolError{Op: "read hello reply", Err: err})
	}
	neg, err := parseReply(rf, frameID)
	if err != nil {
		return fail(err)
	}
	pipe, connID := neg.GetBackendPipe(), neg.GetConnectionId()
	var key cacheKey
	var entry cacheEntry
	if d.cfg.helloSkip && pipe != "" {
		key = cacheKey{socket: d.sock, service: d.service, version: d.cfg.version}
		entry = cacheEntry{pipe: pipe, daemonVersion: neg.GetDaemonVersion()}
		skipCache.Store(key, entry)
	}

	if token := neg.GetHandlePassedToken(); !d.cfg.noHandoff && earlyComplete &&
		neg.GetServerCapabilities()&wire.CapHandlePassing != 0 &&
		len(token) == wire.TokenLen && connID != 0 {
		readyDeadline := d.deadline(d.cfg.readyTimeout)
		if !d.cfg.awaitReady && !fr.hasFrame() {
			// The ready event is not here yet. Return now and let the
			// first Read (or Route) settle the route: the caller's first
			// request then travels to the backend while it adopts the
			// socket, instead of after a wait for it.
			if !stop() {
				_ = bc.Close()
				return nil, d.ctxErr()
			}
			if err := bc.SetDeadline(time.Time{}); err != nil {
				_ = bc.Close()
				return nil, fmt.Errorf("portier: clear deadline: %w", err)
			}
			c := newConn(bc, Handoff, connID, pipe, neg.GetDaemonVersion(), nil)
			c.adopt = &adoption{
				fr: fr, token: token, deadline: readyDeadline,
				handshakeTimeout: d.cfg.handshakeTimeout,
				sent:             append([]byte(nil), d.cfg.earlyData...),
				redial:           d,
			}
			c.settled.Store(false)
			return c, nil
		}
		_ = bc.SetReadDeadline(readyDeadline)
		// A cancellation whose poisoned deadline the line above replaced
		// is seen here; a later one interrupts the read.
		var ev *pb.Frame
		if err = d.ctx.Err(); err == nil {
			ev, err = fr.next(maxReplyBody)
			if errors.Is(err, os.ErrDeadlineExceeded) && d.ctx.Err() == nil {
				ev, err = lastChance(bc, fr)
			}
		}
		if err == nil && readyMatches(ev, token, connID) {
			if !stop() {
				_ = bc.Close()
				return nil, d.ctxErr()
			}
			if err := bc.SetDeadline(time.Time{}); err != nil {
				_ = bc.Close()
				return nil, fmt.Errorf("portier: clear deadline: %w", err)
			}
			return newConn(bc, Handoff, connID, pipe, neg.GetDaemonVersion(), fr.rest()), nil
		}
		// EOF, a refused or mismatched event, garbage or the ready
		// timeout: the handoff did not complete, nobody read the early
		// data, reconnect.
	}
	_ = bc.Close()
	if !stop() || d.ctxDone() {
		return nil, d.ctxErr()
	}
	if pipe == "" {
		return nil, &ProtocolError{Op: "negotiated", Err: errors.New("no backend_pipe to reconnect to")}
	}
	rdl := d.deadline(d.cfg.handshakeTimeout)
	uc, err := dialUnix(d.ctx, pipe, rdl)
	if err == nil {
		if _, err = d.writeEarly(uc, rdl); err != nil {
			_ = uc.Close()
		}
	}
	if err != nil {
		if d.cfg.helloSkip {
			skipCache.CompareAndDelete(key, entry)
		}
		if d.ctxDone() {
			return nil, d.ctxErr()
		}
		if d.rehellos < maxRehellos {
			// The backend died under us (a failed handoff is often why):
			// ask the broker again, which starts a new one.
			return d.rehello(d.cfg.earlyData)
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrBackendUnavailable, pipe, err)
	}
	return newConn(uc, Reconnect, connID, pipe, neg.GetDaemonVersion(), nil), nil
}

// A process's pid does not change (Go programs do not fork without exec),
// and reading it per Dial cost a syscall.
var selfPID = uint32(os.Getpid())

// maxRehellos bounds the fresh Hellos a dial sends after backend_pipe
// turned out dead.
const maxRehellos = 2

// rehello repeats the Hello without the handoff capability and with replay
// as early data, after backend_pipe could not be reached: the broker notices
// a dead backend at once and routes the new Hello to a fresh one.
func (d *dialer) rehello(replay []byte) (*Conn, error) {
	cfg := d.cfg
	cfg.noHandoff, cfg.helloSkip, cfg.earlyData, cfg.autoStart = true, false, replay, nil
	h := proto.Clone(d.helloMsg).(*pb.Hello)
	h.ClientCapabilities = 0
	nd := &dialer{ctx: d.ctx, cfg: cfg, service: d.service, sock: d.sock, helloMsg: h, rehellos: d.rehellos + 1}
	if nd.rehellos > 1 {
		// The broker may not have reaped the dead backend yet.
		if err := nd.sleep(time.Duration(nd.rehellos) * 10 * time.Millisecond); err != nil {
			return nil, err
		}
	}
	return nd.hello(h, frameIDs.Add(1))
}

// lastChance looks once more, without waiting, for a ready event that
// arrived while the ready timeout was being handled. Adopting it is better
// than reconnecting: a backend whose ready write succeeded hands the
// connection, and the early data in it, to its application, so replaying
// that data elsewhere would deliver it twice. (The window between this look
// and closing the socket remains; it is microseconds wide.)
func lastChance(bc *net.UnixConn, fr *frameReader) (*pb.Frame, error) {
	if err := bc.SetReadDeadline(time.Time{}); err != nil {
		return nil, err
	}
	rc, err := bc.SyscallConn()
	if err != nil {
		return nil, err
	}
	saved := fr.r
	fr.r = nonblockReader{rc}
	defer func() { fr.r = saved }()
	return fr.next(maxReplyBody)
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

// dialBroker connects to the broker, starting it first when AutoStart is on
// and its socket is missing.
func (d *dialer) dialBroker() (*net.UnixConn, error) {
	uc, err := dialUnix(d.ctx, d.sock, d.deadline(d.cfg.handshakeTimeout))
	if err == nil {
		return d.checkPeer(uc)
	}
	if d.ctxDone() {
		return nil, d.ctxErr()
	}
	if d.cfg.autoStart == nil || !brokerMissing(err) {
		return nil, fmt.Errorf("%w: %s: %w", ErrBrokerUnavailable, d.sock, err)
	}
	return d.autoStart(err)
}

// checkPeer refuses a broker socket served by another user than this
// process's effective one: the default path is under /tmp when
// $XDG_RUNTIME_DIR is unset, and the Hello and early data must not go to
// whoever planted a socket there.
func (d *dialer) checkPeer(uc *net.UnixConn) (*net.UnixConn, error) {
	if _, err := ipc.CheckPeer(uc, ipc.EffectiveUID); err != nil {
		_ = uc.Close()
		return nil, fmt.Errorf("%w: %s: %w", ErrBrokerUnavailable, d.sock, err)
	}
	return uc, nil
}
