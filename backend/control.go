package backend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// control is one control connection to the broker. Writes are serialized so
// concurrent frames never interleave.
//
// ACKs are coalesced without a timer where the platform's reader can tell
// when it has read everything the broker sent (Unix, fdpass.Receiver's
// OnIdle): an ACK waits only until the reader has handled the offers
// already in the socket, so offers that arrived together are answered in
// one write (one broker wakeup), and a lone offer's ACK goes out one
// recvmsg later. (A batch held for up to 1 ms was measured slower: it
// landed in the middle of later Hellos, whose broker work then waited
// behind it; handoff vs reconnect p50 at c=1 was 1.07-1.21 against
// 0.96-0.99 with ACKs written at once.) Elsewhere ACKs are written at once.
type control struct {
	conn net.Conn
	wmu  sync.Mutex

	// coalesce is set, before the first offer, by a reader that calls
	// flushAcks whenever it is about to wait; acks then holds ACK frames
	// not yet written. acks and nacks are guarded by wmu, so that
	// unregister, on another goroutine, writes them before its frame.
	coalesce bool
	acks     []byte
	nacks    int
}

// maxCoalescedAcks bounds the ACKs held back while offers keep arriving
// without a pause, so that a broker counting handoffs in flight sees them
// complete.
const maxCoalescedAcks = 16

// send writes f.
func (c *control) send(f *pb.Frame) error {
	b, err := wire.EncodeFrame(f)
	if err != nil {
		return err
	}
	return c.write(b)
}

// write writes b, one or more complete frames, under a deadline.
func (c *control) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(b)
}

// writeLocked is write with wmu held.
func (c *control) writeLocked(b []byte) error {
	if err := c.conn.SetWriteDeadline(time.Now().Add(ioTimeout)); err != nil {
		return err
	}
	_, err := c.conn.Write(b)
	return err
}

// flushAcks writes the ACKs held back, if any. A lost ACK is the broker's
// ACK timeout.
func (c *control) flushAcks() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.flushAcksLocked()
}

// flushAcksLocked is flushAcks with wmu held.
func (c *control) flushAcksLocked() {
	if len(c.acks) == 0 {
		return
	}
	_ = c.writeLocked(c.acks)
	c.acks, c.nacks = c.acks[:0], 0
}

// unregister tells the broker this backend is closing on purpose, then
// closes the connection. ACKs held back go out first: unregister runs
// while the reader may hold some (a Quiesce read right after offers starts
// it), and an ACK lost with the connection turns an adopted connection
// into a failed handoff, whose 0-RTT client the broker then cuts off.
func (c *control) unregister() {
	if f, err := wire.NewRequest(wire.ProtocolBackendControl, 0, &pb.BackendControl{Msg: &pb.BackendControl_Unregister{Unregister: &pb.Unregister{}}}); err == nil {
		if b, err := wire.EncodeFrame(f); err == nil {
			c.wmu.Lock()
			c.flushAcksLocked()
			_ = c.writeLocked(b)
			c.wmu.Unlock()
		}
	}
	c.conn.Close()
}

// ack answers an offer.
func (c *control) ack(correlationID uint64, token []byte, accepted bool, detail string) {
	f, err := wire.NewRequest(wire.ProtocolHandoff, correlationID, &pb.HandoffAck{
		Token: token, Accepted: accepted, ErrorDetail: detail, CorrelationId: correlationID,
	})
	if err != nil {
		return
	}
	f.Kind = pb.FrameKind_FRAME_KIND_RESPONSE
	if !c.coalesce {
		_ = c.send(f) // a lost ACK is the broker's ACK timeout
		return
	}
	c.wmu.Lock()
	if c.acks, err = wire.AppendFrame(c.acks, f); err == nil {
		c.nacks++
	}
	full := c.nacks >= maxCoalescedAcks
	c.wmu.Unlock()
	if full {
		c.flushAcks()
	}
}

// register dials the broker and registers this backend.
func (l *Listener) register(ctx context.Context) (*control, error) {
	conn, err := dialBroker(ctx, l.env.Broker)
	if err != nil {
		return nil, fmt.Errorf("backend: dial broker %s: %w", l.env.Broker, err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultRegisterTimeout)
	}
	_ = conn.SetDeadline(deadline)
	// Cancellation (Close, during a re-registration) ends the wait for the
	// reply at once rather than at the deadline.
	stopWatch := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stopWatch()
	c := &control{conn: conn}
	reg := &pb.Register{
		ServiceName:    l.env.Service,
		Version:        l.env.Version,
		Pid:            uint32(os.Getpid()),
		Endpoint:       l.env.Endpoint,
		SpawnSecret:    l.env.Secret,
		HandoffCapable: l.opts.handoff,
		ZeroRttCapable: l.opts.handoff && !l.opts.noZeroRTT,
	}
	f, err := wire.NewRequest(wire.ProtocolBackendControl, 1, &pb.BackendControl{Msg: &pb.BackendControl_Register{Register: reg}})
	if err == nil {
		err = c.send(f)
	}
	var reply *pb.Frame
	if err == nil {
		_ = conn.SetWriteDeadline(deadline)
		reply, err = wire.ReadFrame(conn, wire.MaxBody)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("backend: register with broker: %w", err)
	}
	msg, err := decodeControl(reply)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("backend: register with broker: %w", err)
	}
	rr := msg.GetRegisterReply()
	if rr == nil {
		conn.Close()
		return nil, fmt.Errorf("backend: register with broker: unexpected reply %T", msg.GetMsg())
	}
	if !rr.GetAccepted() {
		conn.Close()
		return nil, &RegistrationError{Code: wire.ErrorCode(rr.GetCode()), Reason: rr.GetReason()}
	}
	if !stopWatch() {
		// Canceled just now: the watch may still expire the deadline.
		conn.Close()
		return nil, fmt.Errorf("backend: register with broker: %w", context.Cause(ctx))
	}
	_ = conn.SetDeadline(time.Time{})
	l.log.Debug("registered with broker", "broker", l.env.Broker, "handoff", l.opts.handoff)
	return c, nil
}

func decodeControl(f *pb.Frame) (*pb.BackendControl, error) {
	if f.GetPayloadProtocol() != wire.ProtocolBackendControl {
		return nil, fmt.Errorf("frame of payload protocol 0x%04x, want 0x%04x", f.GetPayloadProtocol(), wire.ProtocolBackendControl)
	}
	return wire.DecodeBackendControl(f.GetPayload())
}

// controlLoop serves the control connection and re-registers with a
// restarted broker until Close.
func (l *Listener) controlLoop(c *control) {
	defer l.wg.Done()
	backoff := minBackoff
	var lost time.Time
	for {
		if c != nil {
			l.mu.Lock()
			if l.closed() {
				// Close ran while c was registering and could not see it.
				l.mu.Unlock()
				c.unregister()
				return
			}
			l.ctrl = c
			l.mu.Unlock()
			l.kickReport() // a (new) broker learns the live connections at once
			err := l.serveControl(c)
			l.mu.Lock()
			l.ctrl = nil
			l.mu.Unlock()
			c.conn.Close()
			if l.closed() {
				return
			}
			l.log.Info("control connection to broker lost; re-registering", "err", err)
			backoff = minBackoff
			lost = time.Now()
		}
		if time.Since(lost) > l.opts.orphanTimeout {
			// No broker came back: nothing will route clients here or
			// stop this process, so stop taking clients and let it exit.
			l.log.Warn("no broker accepted a registration; closing the listener", "after", l.opts.orphanTimeout)
			go l.stop() // graceful: the connections in progress may finish
			return
		}
		if !l.sleep(backoff) {
			return
		}
		backoff = min(2*backoff, maxBackoff)
		ctx, cancel := context.WithTimeout(l.life, l.opts.registerTimeout)
		var err error
		c, err = l.register(ctx)
		cancel()
		if errors.Is(err, ErrRegistrationRefused) {
			// The broker no longer vouches for this process (it was restarted
			// without our record): stop taking clients so the program exits.
			l.log.Warn("broker refused re-registration; closing the listener", "err", err)
			go l.stop()
			return
		}
	}
}

// handleControl acts on a portier control message from the broker.
func (l *Listener) handleControl(f *pb.Frame) {
	m, err := decodeControl(f)
	if err != nil {
		l.log.Debug("ignoring malformed control message", "err", err)
		return
	}
	if q := m.GetQuiesce(); q != nil {
		// Graceful: no new connections, but those in progress (and
		// handed-off ones Accept has yet to return) are the program's to
		// finish; Shutdown waits for them.
		l.log.Info("broker asked to quiesce; closing the listener", "reason", q.GetReason(), "live_connections", l.live.Load())
		go l.stop() // stop waits for this goroutine
	}
}
