package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/portier/portier/handoff"
	"github.com/portier/portier/internal/ipc"
	"github.com/portier/portier/servicedef"
	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// defaultKeepaliveSecs is offered when the client proposes none.
const defaultKeepaliveSecs = 1800

// workerIdle is how long a connection worker waits for its next connection
// before it exits.
const workerIdle = 10 * time.Second

// dispatch hands an accepted connection to an idle worker, or starts one.
//
// Workers are reused because a fresh goroutine per connection grew its stack
// on every Hello (protobuf decoding and the fd send run deep): with the
// handoff path's deeper stack, runtime.newstack and copystack were about 8%
// of the broker's CPU under load (perf record, 16 concurrent clients). A
// reused worker keeps its grown stack.
func (b *Broker) dispatch(c acceptedConn) {
	select {
	case b.work <- c:
	default:
		b.conns.Add(1)
		go b.worker(c)
	}
}

// worker serves connections until it has been idle for workerIdle or the
// broker stops accepting.
func (b *Broker) worker(c acceptedConn) {
	defer b.conns.Done()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		b.handleConn(c)
		idle.Reset(workerIdle)
		select {
		case c = <-b.work:
		case <-idle.C:
			return
		case <-b.idleStop:
			return
		}
	}
}

// handleConn owns one accepted connection until it is handed off, answered
// or turned into a backend control connection.
func (b *Broker) handleConn(c acceptedConn) { b.serveConn(c, false) }

// pressureReadTimeout bounds the read of the first frame of a connection
// accepted with the reserve descriptor while the broker is out of them. A
// client writes its Hello right after connecting, so it is normally there
// already; a peer that has sent nothing by then is told FD_PRESSURE without
// an echo, so the reserve is soon free for the next one.
const pressureReadTimeout = 250 * time.Millisecond

// serveConn reads a connection's first frame and serves it by its payload
// protocol: a Hello, a backend's registration or an admin request.
// pressured is set for the connection accepted with the reserve descriptor
// while accepts fail for lack of descriptors: its Hello is answered
// FD_PRESSURE (echoing its request_id and trace context), while an admin
// request is served as usual, since `portier status` is what an operator
// runs exactly then.
func (b *Broker) serveConn(c acceptedConn, pressured bool) {
	// Peer policy before any byte is read: another user's process is closed
	// without an answer (and logged, rate-limited).
	cred, ok := b.peers.Admit(c)
	if !ok {
		b.metrics.peerRejected.Inc()
		c.Close()
		return
	}
	body, ok := b.readFirstFrame(c, pressured)
	if !ok {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	f, err := wire.UnmarshalFrame(body)
	if err != nil {
		b.refuseErr(c, nil, err) // nothing decoded, nothing to echo
		return
	}
	// From here on the frame's trace context is what portier passes on: an
	// invalid traceparent is dropped (W3C: restart the trace), so it is
	// neither echoed nor put in a backend's environment.
	f.Traceparent, f.Tracestate = wire.TraceContext(f)
	if err := wire.CheckEnvelope(f); err != nil {
		b.refuseErr(c, f, err)
		return
	}
	switch f.GetPayloadProtocol() {
	case wire.ProtocolControl:
		if pressured {
			b.refuse(c, f, pb.ErrorCode_ERROR_FD_PRESSURE, "the broker is out of file descriptors; retry shortly", fdPressureRetry, nil)
			return
		}
		b.serveHello(c, cred, f)
	case wire.ProtocolBackendControl:
		b.sup.serveControl(c, cred, f)
	case wire.ProtocolAdmin:
		b.serveAdmin(c, f)
	default:
		b.refuse(c, f, pb.ErrorCode_ERROR_PEER_REJECTED,
			fmt.Sprintf("payload_protocol 0x%04x cannot open a broker connection; send a Hello (0x0000)", f.GetPayloadProtocol()), 0,
			map[string]string{"field": "payload_protocol"})
	}
}

// readFirstFrame reads a connection's first frame, or answers (or closes)
// the connection and reports false.
//
// Admission is fair to real clients: the frame's header is read without a
// Hello slot, within FirstByteTimeout (a client writes its Hello right
// after connecting, so it is there at once), and only then is a slot taken
// for the body, which the whole Hello's deadline (HelloTimeout) bounds. So
// connections that send nothing cost a goroutine and a descriptor for
// FirstByteTimeout but never hold a slot a real client waits for. A slot
// is held only while a body is read: peers that send a header and then
// trickle can fill them all, and a Hello that finds no slot within
// helloSlotWait is answered RATE_LIMITED (retry_after 1 s) instead of
// being left to time out.
func (b *Broker) readFirstFrame(c acceptedConn, pressured bool) ([]byte, bool) {
	timeout := b.cfg.HelloTimeout
	if pressured {
		// One connection at a time comes this way (there is one reserve
		// descriptor), so it takes no Hello slot.
		timeout = min(timeout, pressureReadTimeout)
	}
	start := time.Now()
	deadline := start.Add(timeout)
	headerTimeout := min(timeout, b.cfg.FirstByteTimeout)
	_ = c.SetReadDeadline(start.Add(headerTimeout))
	cr := countingReader{r: c}
	n, err := wire.ReadHeader(&cr, wire.MaxHelloBody)
	if err != nil {
		b.refuseFirstFrame(c, err, cr.n, headerTimeout, pressured)
		return nil, false
	}
	if !pressured {
		slotBy := time.Now().Add(helloSlotWait)
		if deadline.Before(slotBy) {
			slotBy = deadline
		}
		if !b.acquireHelloSlot(slotBy) {
			b.refuse(c, nil, pb.ErrorCode_ERROR_RATE_LIMITED,
				fmt.Sprintf("the broker is reading %d Hellos at once, its limit; retry shortly", cap(b.helloSlots)), time.Second, nil)
			return nil, false
		}
		defer func() { <-b.helloSlots }()
	}
	_ = c.SetReadDeadline(deadline)
	body, err := wire.ReadBody(&cr, n)
	if err != nil {
		b.refuseFirstFrame(c, err, cr.n, timeout, pressured)
		return nil, false
	}
	return body, true
}

// helloSlotWait bounds how long a Hello whose header has arrived waits for
// a slot to read its body in.
const helloSlotWait = time.Second

// fdPressureRetry is the retry_after of FD_PRESSURE: descriptors free up
// as connections finish, which takes moments, not minutes.
const fdPressureRetry = time.Second

// refuseFirstFrame answers a connection whose first frame could not be read.
// got is the number of bytes that did arrive. A peer that sent part of a
// frame and then half-closed (or a half-close before any byte) is told its
// Hello is incomplete while the socket can still carry the answer; one that
// sent part of a frame and then stalled is told the same at the deadline. A
// peer that stayed silent gets no answer (there is nothing to answer),
// except under descriptor pressure, where it learns why it waited.
func (b *Broker) refuseFirstFrame(c acceptedConn, err error, got int, timeout time.Duration, pressured bool) {
	const rej = pb.ErrorCode_ERROR_PEER_REJECTED
	switch {
	case errors.Is(err, wire.ErrFrameTooLarge):
		b.refuse(c, nil, rej, fmt.Sprintf("the first frame is larger than the %d-byte Hello cap", wire.MaxHelloBody), 0, nil)
	case errors.Is(err, wire.ErrBadFramingVersion):
		b.refuse(c, nil, pb.ErrorCode_ERROR_VERSION_UNSUPPORTED, err.Error(), 0, nil)
	case errors.Is(err, io.EOF), errors.Is(err, wire.ErrTruncated):
		b.refuse(c, nil, rej, fmt.Sprintf("incomplete Hello frame: the connection was closed for writing after %d bytes", got), 0, nil)
	case errors.Is(err, os.ErrDeadlineExceeded) && got > 0:
		b.refuse(c, nil, rej, fmt.Sprintf("incomplete Hello frame: %d bytes in %s", got, timeout), 0, nil)
	case errors.Is(err, os.ErrDeadlineExceeded) && pressured:
		b.refuse(c, nil, pb.ErrorCode_ERROR_FD_PRESSURE, "the broker is out of file descriptors; retry shortly", fdPressureRetry, nil)
	default:
		c.Close() // silent until the deadline, or reset: nobody to answer
	}
}

// countingReader counts the bytes read through it, so a failed first-frame
// read can tell a silent peer from one that sent part of a frame.
type countingReader struct {
	r io.Reader
	n int
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n += n
	return n, err
}

func (b *Broker) acquireHelloSlot(deadline time.Time) bool {
	select {
	case b.helloSlots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case b.helloSlots <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

// serveHello routes one client: validate, find or start the backend, decide
// on a handoff, answer Negotiated, and run the handoff.
func (b *Broker) serveHello(c acceptedConn, cred ipc.Cred, f *pb.Frame) {
	// The envelope before the payload: the kind is part of it.
	if f.GetKind() != pb.FrameKind_FRAME_KIND_REQUEST {
		b.refuse(c, f, pb.ErrorCode_ERROR_PEER_REJECTED, "a Hello must be a REQUEST frame", 0, map[string]string{"field": "kind"})
		return
	}
	h, err := wire.DecodeHello(f.GetPayload())
	if err != nil {
		b.refuseErr(c, f, err)
		return
	}
	if r := wire.ValidateHello(h, cred.PID); r != nil {
		b.reply(c, f, r, nil)
		return
	}
	if b.shutting.Load() {
		rf := shuttingDown()
		b.refuse(c, f, rf.code, rf.reason, rf.retryAfter, nil)
		return
	}
	// The caller's deadline: a Hello nobody waits for any more starts
	// nothing, and a wait for a backend start ends with it.
	deadline, hasDeadline := wire.FrameDeadline(f)
	if hasDeadline {
		if late := time.Since(deadline); late >= 0 {
			b.refuse(c, f, pb.ErrorCode_ERROR_PEER_REJECTED,
				fmt.Sprintf("the Hello's deadline (deadline_unix_ms %d) passed %s before the broker could serve it; nothing was started for it",
					f.GetDeadlineUnixMs(), late.Round(time.Millisecond)), 0, map[string]string{"field": "deadline_unix_ms"})
			return
		}
	}
	def, err := b.defs.Lookup(h.GetServiceName())
	if err != nil {
		b.refuseLookup(c, f, h, err)
		return
	}
	if !versionAllowed(def, h) {
		b.refuseFor(c, f, def.Name, pb.ErrorCode_ERROR_VERSION_BLOCKED, versionBlockedReason(def, h),
			versionRetryAfter, map[string]string{"available_version": def.Version})
		return
	}
	b.awaitBackend(c, f, h, def, 0)
}

// maxReacquire bounds how often one Hello asks again for a backend after
// the one it waited for went away (errBackendGone) or died.
const maxReacquire = 2

// awaitBackend gets def's backend (starting it if needed, single-flight)
// and routes the Hello once it is ready, or answers it at the Hello's
// deadline. A backend that went away before it could serve this Hello (a
// re-adopted backend that exited or never re-registered, or one that died
// after it registered) is replaced: the Hello asks again, which starts a
// new backend, up to maxReacquire times. tries counts those asks so far.
func (b *Broker) awaitBackend(c acceptedConn, f *pb.Frame, h *pb.Hello, def *servicedef.Definition, tries int) {
	p, err := b.sup.acquire(def, f.GetTraceparent())
	if err != nil {
		b.refuseErrFor(c, f, def.Name, err)
		return
	}
	serve := func() {
		// A failed start (readyErr a spawn refusal) is this Hello's
		// answer; asking again would only spend the start budget.
		gone := p.readyErr == errBackendGone || (p.readyErr == nil && p.gone.Load())
		if gone && tries < maxReacquire {
			b.awaitBackend(c, f, h, def, tries+1)
			return
		}
		b.route(c, f, h, def, p)
	}
	deadline, hasDeadline := wire.FrameDeadline(f)
	b.park(p, c, deadline, hasDeadline, serve, func() {
		b.refuseFor(c, f, def.Name, pb.ErrorCode_ERROR_BACKEND_SPAWN_FAILED,
			fmt.Sprintf("%s@%s was not ready by the Hello's deadline (deadline_unix_ms %d); it is still starting, so retry",
				p.service, p.version, f.GetDeadlineUnixMs()),
			time.Second, map[string]string{"deadline_unix_ms": strconv.FormatUint(f.GetDeadlineUnixMs(), 10)})
	})
}

// route answers a Hello whose backend is ready (or failed to start) and
// runs its handoff.
func (b *Broker) route(c acceptedConn, f *pb.Frame, h *pb.Hello, def *servicedef.Definition, p *proc) {
	if p.readyErr != nil {
		b.refuseErrFor(c, f, def.Name, p.readyErr)
		return
	}
	connID := b.connIDs.Add(1)
	ka := h.GetClientKeepaliveSecs()
	if ka == 0 {
		ka = defaultKeepaliveSecs
	}
	neg := &pb.Negotiated{
		NegotiatedProtocol:    wire.ProtocolVersion,
		DaemonVersion:         p.version,
		BackendPipe:           p.endpoint,
		KeepaliveIntervalSecs: ka,
		ConnectionId:          connID,
	}
	ctrl := p.control()
	attempt, decision := b.orch.Begin(p.handoffKey(), connID, def.Name, handoff.Inputs{
		ClientCapable:  h.GetClientCapabilities()&wire.CapHandlePassing != 0,
		PolicyEnabled:  def.Handoff,
		BackendCapable: ctrl != nil && ctrl.handoffCapable,
		FDPressure:     b.fdPressure.Load(),
	})
	if attempt != nil {
		tok := attempt.Token()
		neg.ServerCapabilities = wire.CapHandlePassing
		neg.HandlePassedToken = tok[:]
		b.inflight.Add(1)
	}
	p.touch()
	// A 0-RTT handoff: the client said it answers a connection that ends
	// before any HelloReply with a fresh Hello, and the backend takes 0-RTT
	// offers, so the broker writes nothing here; the backend writes this
	// Negotiated together with the ready event once it has adopted the
	// connection. Otherwise Negotiated goes out now, before the offer.
	var reply []byte
	if attempt != nil && zeroRTT(h) && ctrl.zeroRTTCapable {
		reply, _ = replyFrame(f, neg) // nil on failure: write it here instead
	}
	if reply == nil {
		if err := b.reply(c, f, nil, neg); err != nil {
			// reply closes c only for a refusal; nobody else holds it.
			c.Close()
			if attempt != nil {
				out := attempt.Abandon(handoff.ReasonTransferFailed, "write Negotiated: "+err.Error())
				b.metrics.handoff(def.Name, out)
				b.inflight.Done()
			}
			return
		}
	}
	if attempt == nil {
		b.metrics.route(def.Name, "reconnect", decision.Reason.String())
		b.log.Debug("hello routed", "conn", connID, "service", def.Name, "route", "reconnect", "reason", decision.Reason.String())
		c.Close()
		return
	}
	// From here on the broker never reads or writes c again (one writer
	// per connection: the backend writes the ready event on it): it sends
	// its descriptor to the backend and closes its own copy once the
	// outcome is known. The worker is free as soon as the offer is out.
	ctrl.startHandoff(attempt, c, reply, func(out handoff.Outcome) {
		if reply != nil && !out.Completed {
			// The client waits for a reply nobody will write; it must see
			// the connection end even while the backend still holds it.
			revokeClient(c, out)
		}
		c.Close()
		b.metrics.handoff(def.Name, out)
		b.inflight.Done()
		if out.Completed {
			b.log.Debug("hello routed", "conn", connID, "service", def.Name, "route", "handoff")
		} else {
			b.logFallback(connID, def.Name, out)
		}
	})
}

// zeroRTT reports whether a Hello takes 0-RTT handoffs: CAP_PORTIER_0RTT
// next to CAP_HANDLE_PASSING.
func zeroRTT(h *pb.Hello) bool {
	const both = wire.CapHandlePassing | wire.CapZeroRTT
	return h.GetClientCapabilities()&both == both
}

// replyFrame encodes the HelloReply carrying neg that answers req, as reply
// would write it.
func replyFrame(req *pb.Frame, neg *pb.Negotiated) ([]byte, error) {
	f, err := wire.NewResponse(req, wire.ProtocolControl, &pb.HelloReply{Result: &pb.HelloReply_Negotiated{Negotiated: neg}})
	if err != nil {
		return nil, err
	}
	return wire.EncodeFrame(f)
}

// logFallback logs a handoff that fell back. A handle the transport placed
// in the backend (Windows) is named by its value, with what became of it;
// one that leaked is a warning, since it stays open in the backend until
// that exits.
func (b *Broker) logFallback(connID uint64, service string, out handoff.Outcome) {
	attrs := []any{"conn", connID, "service", service, "route", "handoff_fallback",
		"stage", out.Stage.String(), "reason", out.Reason.String(), "detail", out.Detail}
	level := slog.LevelDebug
	if out.HandleValue != 0 {
		attrs = append(attrs, "handle_value", fmt.Sprintf("%#x", out.HandleValue), "leaked", out.Leaked, "reclaimed", out.Reclaimed)
		if out.Leaked {
			level = slog.LevelWarn
		}
	}
	b.log.Log(context.Background(), level, "hello routed", attrs...)
}

// refuseLookup answers a Hello whose service definition could not be had.
func (b *Broker) refuseLookup(c net.Conn, f *pb.Frame, h *pb.Hello, err error) {
	rf := b.lookupRefusal(h.GetServiceName(), err, h.GetClientCapabilities())
	b.refuse(c, f, rf.code, rf.reason, rf.retryAfter, rf.details)
}

// lookupRefusal is the refusal for a service whose definition could not be
// had (for a Hello, or `portier restart`). caps are the client's
// capability bits: portier's own refusal codes go only to a client that
// set wire.CapRefusalCodes, a v1 client gets the v1 code for the cause.
// Neither an invalid definition nor an unsafe directory mends itself, so
// neither says when to retry; the registry has logged both.
func (b *Broker) lookupRefusal(name string, err error, caps uint64) *refusal {
	ext := caps&wire.CapRefusalCodes != 0
	var defErr *servicedef.Error
	var dirErr *servicedef.DirError
	switch {
	case errors.Is(err, servicedef.ErrUnknown):
		return &refusal{code: pb.ErrorCode_ERROR_SERVICE_UNKNOWN,
			reason: fmt.Sprintf("no service %q: add %s.toml to %s", name, name, b.cfg.ServicesDir)}
	case errors.As(err, &defErr):
		code := pb.ErrorCode_ERROR_SERVICE_UNKNOWN
		if ext {
			code = pb.ErrorCode_ERROR_DEFINITION_INVALID
		}
		return &refusal{code: code,
			reason:  fmt.Sprintf("service %q has an invalid definition: %v (fix the file; the next Hello reads it again)", name, err),
			details: map[string]string{"definition_error": err.Error(), "definition": defErr.File}}
	case errors.As(err, &dirErr):
		code := pb.ErrorCode_ERROR_INTERNAL
		if ext {
			code = pb.ErrorCode_ERROR_SERVICES_DIR_UNSAFE
		}
		return &refusal{code: code,
			reason:  fmt.Sprintf("the broker refuses its services directory %s, so it runs no service from it: %s", dirErr.Dir, dirErr.Reason),
			details: map[string]string{"services_dir": dirErr.Dir, "problem": string(dirErr.Problem)}}
	case errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE):
		return &refusal{code: pb.ErrorCode_ERROR_FD_PRESSURE, reason: "the broker is out of file descriptors; retry shortly", retryAfter: fdPressureRetry}
	default: // the services directory or the file could not be read
		return &refusal{code: pb.ErrorCode_ERROR_INTERNAL, reason: fmt.Sprintf("cannot read the definition of %q: %v", name, err), retryAfter: time.Second}
	}
}

// versionRetryAfter tells a client refused for its version when to look
// again. Retrying sooner cannot succeed: only an edit of the definition
// changes the answer, and that takes a person.
const versionRetryAfter = 30 * time.Second

// versionAllowed applies the definition's version policy to the Hello's
// wanted_version; with CapAnyVersion, wanted_version is only the lowest
// version the client accepts.
func versionAllowed(def *servicedef.Definition, h *pb.Hello) bool {
	if h.GetClientCapabilities()&wire.CapAnyVersion != 0 {
		return def.AtLeast(h.GetWantedVersion())
	}
	return def.Allows(h.GetWantedVersion())
}

func versionBlockedReason(def *servicedef.Definition, h *pb.Hello) string {
	w := h.GetWantedVersion()
	if h.GetClientCapabilities()&wire.CapAnyVersion != 0 {
		return fmt.Sprintf("service %q serves version %s, older than the %s this client accepts at least", def.Name, def.Version, w)
	}
	return fmt.Sprintf("service %q does not serve version %s (its definition names %s)", def.Name, w, versionRule(def))
}

func versionRule(d *servicedef.Definition) string {
	switch {
	case len(d.AllowVersions) > 0:
		return fmt.Sprintf("version %s, allowing %v", d.Version, d.AllowVersions)
	case d.MinVersion != "":
		return fmt.Sprintf("version %s, minimum %s", d.Version, d.MinVersion)
	default:
		return "version " + d.Version
	}
}

// shuttingDown is the refusal of a broker that is stopping: retrying a
// moment later reaches its successor (a restart) or finds no broker.
func shuttingDown() *refusal {
	return &refusal{code: pb.ErrorCode_ERROR_SHUTTING_DOWN,
		reason: "the broker is shutting down; retry to reach its successor", retryAfter: time.Second}
}

// refusal is an error that becomes a typed Refused.
type refusal struct {
	code       pb.ErrorCode
	reason     string
	retryAfter time.Duration
	details    map[string]string
}

func (r *refusal) Error() string { return r.code.String() + ": " + r.reason }

// refusalFor turns an error from the supervisor into the Refused a client
// (or an admin command) is sent.
func refusalFor(err error) *pb.Refused {
	var rf *refusal
	var v *wire.Violation
	switch {
	case errors.As(err, &rf):
		return wire.NewRefused(rf.code, rf.reason, rf.retryAfter, rf.details)
	case errors.As(err, &v):
		return v.Refused()
	default:
		return wire.NewRefused(pb.ErrorCode_ERROR_INTERNAL, err.Error(), time.Second, nil)
	}
}

func (b *Broker) refuseErr(c net.Conn, req *pb.Frame, err error) {
	b.refuseErrFor(c, req, "", err)
}

// refuseErrFor is refuseErr for a Hello whose service resolved to a
// definition: the refusal is counted under that service.
func (b *Broker) refuseErrFor(c net.Conn, req *pb.Frame, service string, err error) {
	b.replyFor(c, req, service, refusalFor(err), nil)
}

func (b *Broker) refuse(c net.Conn, req *pb.Frame, code pb.ErrorCode, reason string, retryAfter time.Duration, details map[string]string) {
	b.refuseFor(c, req, "", code, reason, retryAfter, details)
}

// refuseFor is refuse, counted under service (see refuseErrFor).
func (b *Broker) refuseFor(c net.Conn, req *pb.Frame, service string, code pb.ErrorCode, reason string, retryAfter time.Duration, details map[string]string) {
	b.replyFor(c, req, service, wire.NewRefused(code, reason, retryAfter, details), nil)
}

// reply writes a HelloReply (refused or negotiated) under a deadline. A
// refusal also closes the connection.
func (b *Broker) reply(c net.Conn, req *pb.Frame, refused *pb.Refused, neg *pb.Negotiated) error {
	return b.replyFor(c, req, "", refused, neg)
}

// replyFor is reply, counting a refusal under service (see refuseErrFor).
func (b *Broker) replyFor(c net.Conn, req *pb.Frame, service string, refused *pb.Refused, neg *pb.Negotiated) error {
	hr := &pb.HelloReply{}
	if refused != nil {
		hr.Result = &pb.HelloReply_Refused{Refused: refused}
		b.metrics.refused(service, refused.GetCode())
		b.log.Debug("hello refused", "code", refused.GetCode().String(), "reason", refused.GetReason())
		defer c.Close()
	} else {
		hr.Result = &pb.HelloReply_Negotiated{Negotiated: neg}
	}
	if req == nil {
		req = &pb.Frame{}
	}
	f, err := wire.NewResponse(req, wire.ProtocolControl, hr)
	if err != nil {
		return err
	}
	_ = c.SetWriteDeadline(time.Now().Add(b.cfg.HelloTimeout))
	return wire.WriteFrame(c, f)
}
