package backend

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// arrival is what travelled with an offer: the client's connection as the
// platform moves it (a descriptor received with SCM_RIGHTS on Unix), not yet
// adopted. handleOffer calls exactly one of adopt and discard.
type arrival interface {
	// problem reports why there is nothing to adopt (a truncated
	// control message, no descriptor), nil when there is.
	problem() error
	// adopt turns the arrival into a net.Conn without writing to it,
	// taking it over: on failure it has closed it.
	adopt() (net.Conn, error)
	// discard closes the arrival unadopted.
	discard()
}

// handleOffer takes one offer through the only path there is:
//
//	check → reserve a queue slot → adopt → write the ready event → queue for Accept → ACK
//
// A 0-RTT offer (payload protocol 0xF002) carries the HelloReply the
// broker did not write to its client: the backend writes it and the ready
// event in one write, so the client learns Negotiated and that the handoff
// completed from one read.
//
// Every rejection closes what arrived without writing a byte to it (the
// client sees EOF and reconnects, or, before a 0-RTT reply, sends a fresh
// Hello) and ACKs accepted=false with the reason.
// It runs inline on the control reader and never waits: checks,
// adoption, the ready event, the queue and the ACK take about 10 µs (the
// queue slot is reserved before adoption, every write has a deadline), so a
// slow Accept caller cannot stall the control connection. Inline rather than
// on a goroutine per offer saves a goroutine wakeup per handoff (perf stat:
// fewer context switches per connection), and at that cost one reader adopts
// far more connections per second than the broker hands out.
func (l *Listener) handleOffer(c *control, f *pb.Frame, in arrival) {
	o, reply, err := l.checkOffer(f)
	if perr := in.problem(); perr != nil {
		err = perr // nothing to adopt outranks what is wrong with the offer
	}
	reject := func(detail string) {
		in.discard()
		c.ack(f.GetRequestId(), o.GetToken(), false, detail)
	}
	switch {
	case err != nil:
		reject(err.Error())
		return
	case l.closed():
		reject("backend listener is closed")
		return
	case !l.reserve():
		reject("accept queue full")
		return
	}
	ready, err := readyEvent(reply, f, o)
	if err != nil {
		l.release()
		reject(err.Error())
		return
	}
	// The connection is adopted before anything is written on it: a
	// failure here is a rejection the client must not see a ready event for.
	conn, err := in.adopt()
	if err != nil {
		l.release()
		c.ack(f.GetRequestId(), o.GetToken(), false, "adopt connection: "+err.Error())
		return
	}
	if err := writeReady(conn, ready); err != nil {
		conn.Close()
		l.release()
		c.ack(f.GetRequestId(), o.GetToken(), false, "write handoff-ready event: "+err.Error())
		return
	}
	l.handoffs <- l.track(conn) // the reserved slot guarantees room
	c.ack(f.GetRequestId(), o.GetToken(), true, "")
}

// checkOffer validates an offer before anything is written to its
// connection. It returns the decoded offer whenever the payload decodes, so
// a rejection can echo its token, and for a 0-RTT offer the HelloReply
// frame to write before the ready event.
func (l *Listener) checkOffer(f *pb.Frame) (o *pb.HandoffOffer, reply []byte, err error) {
	if f.GetKind() != pb.FrameKind_FRAME_KIND_REQUEST {
		return nil, nil, fmt.Errorf("handoff frame of kind %s, want REQUEST", f.GetKind())
	}
	if f.GetPayloadProtocol() == wire.ProtocolZeroRTTOffer {
		z, err := wire.DecodeZeroRTTOffer(f.GetPayload())
		if err != nil {
			return nil, nil, err
		}
		o, reply = z.GetOffer(), z.GetHelloReply()
	} else if o, err = wire.DecodeHandoffOffer(f.GetPayload()); err != nil {
		return nil, nil, err
	}
	return o, reply, l.offerFits(f, o)
}

// offerFits checks a decoded offer against this backend and the clock.
func (l *Listener) offerFits(f *pb.Frame, o *pb.HandoffOffer) error {
	if subtle.ConstantTimeCompare([]byte(o.GetServiceName()), []byte(l.env.Service)) != 1 {
		return fmt.Errorf("offer for service %q reached the backend of %q", o.GetServiceName(), l.env.Service)
	}
	if d := f.GetDeadlineUnixMs(); d != 0 && uint64(time.Now().UnixMilli()) > d {
		// The client may have given up waiting and replayed its bytes on
		// the reconnect route; adopting now could serve them twice.
		return errors.New("offer expired before it was adopted")
	}
	if o.GetCorrelationId() != f.GetRequestId() {
		return fmt.Errorf("offer correlation_id %d differs from its frame's request_id %d", o.GetCorrelationId(), f.GetRequestId())
	}
	return nil
}

// reserve takes a queue slot for a handed-off connection, or reports that
// the queue is full.
func (l *Listener) reserve() bool {
	if l.reserved.Add(1) > int64(l.opts.queue) {
		l.reserved.Add(-1)
		return false
	}
	return true
}

// release gives back a slot reserve took for an offer that was not queued.
func (l *Listener) release() { l.reserved.Add(-1) }

// readyEvent is what is written on a handed-off connection: the handoff-ready
// EVENT, after reply (a 0-RTT offer's HelloReply frame) when there is one.
func readyEvent(reply []byte, offerFrame *pb.Frame, o *pb.HandoffOffer) ([]byte, error) {
	f, err := wire.NewEvent(wire.ProtocolHandoff, o.GetCorrelationId(), &pb.HandoffAck{
		Token: o.GetToken(), Accepted: true, CorrelationId: o.GetCorrelationId(),
	}, offerFrame)
	if err != nil {
		return nil, err
	}
	return wire.AppendFrame(append(make([]byte, 0, len(reply)+128), reply...), f)
}
