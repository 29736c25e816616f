package broker

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/portier/portier/handoff"
	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// controlConn is a verified backend's persistent control connection: offers
// (with their descriptors) go out on it, ACKs come back.
type controlConn struct {
	conn           acceptedConn
	proc           *proc
	handoffCapable bool
	// zeroRTTCapable: the backend takes 0-RTT offers (it writes the
	// HelloReply they carry with the ready event).
	zeroRTTCapable bool
	orch           *handoff.Orchestrator
	log            *slog.Logger

	wmu sync.Mutex // serializes writes so frames never interleave

	mu      sync.Mutex
	closed  bool
	pending map[uint64]*handoff.Attempt
}

// offerWriteTimeout bounds one write of an offer (a backend that stops
// reading its control connection must not hold a handoff forever).
const offerWriteTimeout = 2 * time.Second

// startHandoff moves client to the backend and returns; done
// receives the outcome exactly once (ACK, rejection, deadline or loss of the
// control connection), possibly before startHandoff returns. No goroutine
// waits for the ACK: the control reader (or the deadline's timer) completes
// the attempt. reply, when not nil, makes it a 0-RTT offer: the complete
// HelloReply frame the backend writes to the client before the ready event.
func (c *controlConn) startHandoff(a *handoff.Attempt, client acceptedConn, reply []byte, done func(handoff.Outcome)) {
	id := a.ConnectionID()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		done(a.Abandon(handoff.ReasonBackendNotCapable, "backend control connection closed"))
		return
	}
	c.pending[id] = a
	c.mu.Unlock()
	validUntil := time.Now().Add(maxOfferValidity)
	if d := a.Deadline(); d.Before(validUntil) {
		validUntil = d
	}
	a.Start(context.Background(), c.transport(client, reply, validUntil), func(out handoff.Outcome) {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		done(out)
	})
}

// abandonPending fails every handoff waiting on this connection at once,
// so their clients see EOF and reconnect instead of waiting for the ACK
// deadline. No ACK can come any more: the connection is the transport, so
// the reason is a transfer failure (a handle already in the backend counts
// as leaked).
func (c *controlConn) abandonPending(detail string) {
	c.mu.Lock()
	c.closed = true
	pending := make([]*handoff.Attempt, 0, len(c.pending))
	for _, a := range c.pending {
		pending = append(pending, a)
	}
	c.mu.Unlock()
	// Abandon runs each attempt's completion, which takes c.mu: not under it.
	for _, a := range pending {
		a.Abandon(handoff.ReasonTransferFailed, detail)
	}
}

// readLoop reads ACKs and backend notices until the connection closes. The
// peer is a verified local process whose exit closes the socket, so the
// idle read has no deadline. Nothing but frames arrives on this side of the
// connection (descriptors only travel to the backend), so it is read
// through a buffer: ACKs that arrive together cost one read.
func (c *controlConn) readLoop() {
	r := bufio.NewReaderSize(c.conn, 4096)
	for {
		f, err := wire.ReadFrame(r, wire.MaxBody)
		if err != nil {
			return
		}
		switch f.GetPayloadProtocol() {
		case wire.ProtocolHandoff:
			ack, err := wire.DecodeHandoffAck(f.GetPayload())
			if err != nil {
				continue
			}
			tok, err := handoff.TokenFromBytes(ack.GetToken())
			if err != nil {
				continue
			}
			if err := c.orch.Ack(ack.GetCorrelationId(), tok, ack.GetAccepted(), ack.GetErrorDetail(), time.Now()); err != nil {
				c.log.Debug("handoff ack not applied", "conn", ack.GetCorrelationId(), "err", err)
			}
		case wire.ProtocolBackendControl:
			m, err := wire.DecodeBackendControl(f.GetPayload())
			switch {
			case err != nil:
			case m.GetUnregister() != nil:
				// The backend closed its listener on purpose: route new
				// clients to a fresh process.
				c.proc.quiesced.Store(true)
			case m.GetConnectionReport() != nil:
				c.proc.noteConnections(m.GetConnectionReport().GetLiveConnections())
			}
		}
	}
}

func (c *controlConn) send(f *pb.Frame) error {
	b, err := wire.EncodeFrame(f)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(offerWriteTimeout))
	_, err = c.conn.Write(b)
	return err
}

func (c *controlConn) quiesce(reason string) {
	f, err := wire.NewRequest(wire.ProtocolBackendControl, 0, &pb.BackendControl{Msg: &pb.BackendControl_Quiesce{Quiesce: &pb.Quiesce{Reason: reason}}})
	if err == nil {
		_ = c.send(f)
	}
}

// maxOfferValidity bounds how late a backend may adopt an offer. The
// client's ready timeout (2 s by default) must exceed it: a client that gave
// up and replayed its bytes on the reconnect route must never also have them
// read by a backend that adopted the socket late.
const maxOfferValidity = time.Second

// errControlClosed: the backend's control connection went away before the
// offer could be sent.
var errControlClosed = errors.New("broker: backend control connection closed")

// isClosed reports whether the control connection has been given up
// (abandonPending ran). A transport checks it before it delivers: the
// attempt is in c.pending before Start, so either the transport sees the
// connection abandoned, or abandonPending abandons the attempt (which then
// ends as soon as Deliver returns): no offer waits for an ACK on a
// connection nobody reads ACKs from.
func (c *controlConn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// offerFrame encodes the offer frame of o: a HandoffOffer, or, with a
// reply (the HelloReply frame the broker did not write to a 0-RTT client),
// a ZeroRttOffer carrying both. handleValue is the client's handle in the
// backend (Windows), 0 where the connection rides with the frame (Unix);
// validUntil becomes the frame's deadline_unix_ms, after which the backend
// must not adopt the connection.
func offerFrame(o *handoff.Offer, reply []byte, handleValue uint64, validUntil time.Time) ([]byte, error) {
	offer := &pb.HandoffOffer{
		HandleValue: handleValue, Token: o.Token[:], ServiceName: o.Service, CorrelationId: o.ConnectionID,
	}
	var f *pb.Frame
	var err error
	if reply != nil {
		f, err = wire.NewRequest(wire.ProtocolZeroRTTOffer, o.ConnectionID, &pb.ZeroRttOffer{Offer: offer, HelloReply: reply})
	} else {
		f, err = wire.NewRequest(wire.ProtocolHandoff, o.ConnectionID, offer)
	}
	if err != nil {
		return nil, err
	}
	f.DeadlineUnixMs = uint64(validUntil.UnixMilli())
	return wire.EncodeFrame(f)
}
