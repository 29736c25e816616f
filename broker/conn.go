//go:build unix

package broker

import (
	"errors"
	"fmt"
	"net"
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
func (b *Broker) dispatch(c *net.UnixConn) {
	select {
	case b.work <- c:
	default:
		b.conns.Add(1)
		go b.worker(c)
	}
}

// worker serves connections until it has been idle for workerIdle or the
// broker stops accepting.
func (b *Broker) worker(c *net.UnixConn) {
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
func (b *Broker) handleConn(c *net.UnixConn) {
	// Peer policy before any byte is read: another user's process is closed
	// without an answer (and logged, rate-limited).
	cred, ok := b.peers.Admit(c)
	if !ok {
		b.metrics.peerRejected.Inc()
		c.Close()
		return
	}
	deadline := time.Now().Add(b.cfg.HelloTimeout)
	if !b.acquireHelloSlot(deadline) {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(deadline)
	body, err := wire.ReadFrameBody(c, wire.MaxHelloBody)
	<-b.helloSlots
	if err != nil {
		switch {
		case errors.Is(err, wire.ErrFrameTooLarge):
			b.refuse(c, nil, pb.ErrorCode_ERROR_PEER_REJECTED, fmt.Sprintf("the first frame is larger than the %d-byte Hello cap", wire.MaxHelloBody), 0, nil)
		case errors.Is(err, wire.ErrBadFramingVersion):
			b.refuse(c, nil, pb.ErrorCode_ERROR_VERSION_UNSUPPORTED, err.Error(), 0, nil)
		default:
			c.Close() // EOF, timeout, truncation: nobody to answer
		}
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	f, err := wire.DecodeFrame(body)
	if err != nil {
		b.refuseErr(c, nil, err)
		return
	}
	switch f.GetPayloadProtocol() {
	case wire.ProtocolControl:
		b.serveHello(c, cred, f)
	case wire.ProtocolBackendControl:
		b.sup.serveControl(c, cred, f)
	case wire.ProtocolAdmin:
		b.serveAdmin(c, f)
	default:
		b.refuse(c, f, pb.ErrorCode_ERROR_VERSION_UNSUPPORTED,
			fmt.Sprintf("payload_protocol 0x%04x cannot open a broker connection; send a Hello (0x0000)", f.GetPayloadProtocol()), 0, nil)
	}
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
func (b *Broker) serveHello(c *net.UnixConn, cred ipc.Cred, f *pb.Frame) {
	h, err := wire.DecodeHello(f.GetPayload())
	if err != nil {
		b.refuseErr(c, f, err)
		return
	}
	if f.GetKind() != pb.FrameKind_FRAME_KIND_REQUEST {
		b.refuse(c, f, pb.ErrorCode_ERROR_PEER_REJECTED, "a Hello must be a REQUEST frame", 0, nil)
		return
	}
	if r := wire.ValidateHello(h, cred.PID); r != nil {
		b.reply(c, f, r, nil)
		return
	}
	if b.shutting.Load() {
		b.refuse(c, f, pb.ErrorCode_ERROR_SHUTTING_DOWN, "the broker is shutting down; retry to reach its successor", time.Second, nil)
		return
	}
	def, err := b.defs.Lookup(h.GetServiceName())
	if err != nil {
		b.refuseLookup(c, f, h.GetServiceName(), err)
		return
	}
	if w := h.GetWantedVersion(); w != "" && !def.Allows(w) {
		b.refuse(c, f, pb.ErrorCode_ERROR_VERSION_BLOCKED,
			fmt.Sprintf("service %q does not serve version %s (its definition names %s)", def.Name, w, versionRule(def)),
			versionRetryAfter, map[string]string{"available_version": def.Version})
		return
	}
	p, err := b.sup.acquire(def, f.GetTraceparent())
	if err != nil {
		b.refuseErr(c, f, err)
		return
	}
	p.whenReady(func() { b.route(c, f, h, def, p) })
}

// route answers a Hello whose backend is ready (or failed to start) and
// runs its handoff.
func (b *Broker) route(c *net.UnixConn, f *pb.Frame, h *pb.Hello, def *servicedef.Definition, p *proc) {
	if p.readyErr != nil {
		b.refuseErr(c, f, p.readyErr)
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
	if err := b.reply(c, f, nil, neg); err != nil {
		// reply closes c only for a refusal; nobody else holds it.
		c.Close()
		if attempt != nil {
			out := attempt.Abandon(handoff.ReasonTransferFailed, "write Negotiated: "+err.Error())
			b.metrics.handoff(out)
			b.inflight.Done()
		}
		return
	}
	if attempt == nil {
		b.metrics.route("reconnect", decision.Reason.String())
		b.log.Debug("hello routed", "conn", connID, "service", def.Name, "route", "reconnect", "reason", decision.Reason.String())
		c.Close()
		return
	}
	// From here on the broker never reads or writes c again (contract 2):
	// it sends its descriptor to the backend and closes its own copy once
	// the outcome is known. The worker is free as soon as the offer is out.
	ctrl.startHandoff(attempt, c, func(out handoff.Outcome) {
		c.Close()
		b.metrics.handoff(out)
		b.inflight.Done()
		if out.Completed {
			b.log.Debug("hello routed", "conn", connID, "service", def.Name, "route", "handoff")
		} else {
			b.log.Debug("hello routed", "conn", connID, "service", def.Name, "route", "handoff_fallback",
				"stage", out.Stage.String(), "reason", out.Reason.String(), "detail", out.Detail)
		}
	})
}

// refuseLookup answers a Hello whose service definition could not be had.
func (b *Broker) refuseLookup(c net.Conn, f *pb.Frame, name string, err error) {
	var defErr *servicedef.Error
	switch {
	case errors.Is(err, servicedef.ErrUnknown):
		b.refuse(c, f, pb.ErrorCode_ERROR_SERVICE_UNKNOWN,
			fmt.Sprintf("no service %q: add %s.toml to %s", name, name, b.cfg.ServicesDir), 0, nil)
	case errors.As(err, &defErr):
		b.refuse(c, f, pb.ErrorCode_ERROR_SERVICE_UNKNOWN,
			fmt.Sprintf("service %q has an invalid definition: %v", name, err), 0, map[string]string{"definition_error": err.Error()})
	case errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE):
		b.refuse(c, f, pb.ErrorCode_ERROR_FD_PRESSURE, "the broker is out of file descriptors; retry shortly", time.Second, nil)
	default: // the services directory is unsafe or unreadable
		b.refuse(c, f, pb.ErrorCode_ERROR_INTERNAL, fmt.Sprintf("cannot read the definition of %q: %v", name, err), time.Second, nil)
	}
}

// versionRetryAfter tells a client refused for its version when to look
// again: a definition edit is picked up by the next Hello.
const versionRetryAfter = 5 * time.Second

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

// refusal is an error that becomes a typed Refused.
type refusal struct {
	code       pb.ErrorCode
	reason     string
	retryAfter time.Duration
	details    map[string]string
}

func (r *refusal) Error() string { return r.code.String() + ": " + r.reason }

func (b *Broker) refuseErr(c net.Conn, req *pb.Frame, err error) {
	var rf *refusal
	var v *wire.Violation
	switch {
	case errors.As(err, &rf):
		b.refuse(c, req, rf.code, rf.reason, rf.retryAfter, rf.details)
	case errors.As(err, &v):
		b.reply(c, req, v.Refused(), nil)
	default:
		b.refuse(c, req, pb.ErrorCode_ERROR_INTERNAL, err.Error(), time.Second, nil)
	}
}

func (b *Broker) refuse(c net.Conn, req *pb.Frame, code pb.ErrorCode, reason string, retryAfter time.Duration, details map[string]string) {
	b.reply(c, req, wire.NewRefused(code, reason, retryAfter, details), nil)
}

// reply writes a HelloReply (refused or negotiated) under a deadline. A
// refusal also closes the connection.
func (b *Broker) reply(c net.Conn, req *pb.Frame, refused *pb.Refused, neg *pb.Negotiated) error {
	hr := &pb.HelloReply{}
	if refused != nil {
		hr.Result = &pb.HelloReply_Refused{Refused: refused}
		b.metrics.refused(refused.GetCode())
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
