//go:build linux || darwin

package backend

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/portier/portier/wire"
	"golang.org/x/sys/unix"
)

// TestAcksCoalesced: with coalescing on (the Unix control reader), ACKs
// wait until the reader is idle and then go out together; a burst longer
// than maxCoalescedAcks does not wait for the reader to be idle.
func TestAcksCoalesced(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "pair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	ours, broker := conn(fds[0]), conn(fds[1])
	c := &control{conn: ours, coalesce: true}
	tok := newToken()
	readAcks := func(want int) {
		t.Helper()
		for i := range want {
			_ = broker.SetReadDeadline(time.Now().Add(waitTimeout))
			f, err := wire.ReadFrame(broker, wire.MaxBody)
			if err != nil {
				t.Fatalf("ACK %d of %d: %v", i+1, want, err)
			}
			if a, err := wire.DecodeHandoffAck(f.GetPayload()); err != nil || a.GetCorrelationId() != uint64(i+1) {
				t.Fatalf("ACK %d: %v (%v)", i+1, a, err)
			}
		}
		// Nothing more in the socket.
		err := fdWith(broker.(*net.UnixConn), func(fd int) error {
			var b [1]byte
			_, _, err := unix.Recvfrom(fd, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			return err
		})
		if !errors.Is(err, unix.EAGAIN) {
			t.Fatalf("more than %d ACKs written (peek: %v)", want, err)
		}
	}

	for i := uint64(1); i <= 3; i++ {
		c.ack(i, tok, true, "")
	}
	readAcks(0)
	c.flushAcks()
	readAcks(3)
	c.flushAcks() // nothing held: writes nothing
	readAcks(0)

	for i := uint64(1); i <= maxCoalescedAcks; i++ {
		c.ack(i, tok, true, "")
	}
	readAcks(maxCoalescedAcks)
}

// TestUnregisterFlushesAcks: ACKs held back when unregister runs (a
// Quiesce read right after offers stops the listener on another
// goroutine) reach the broker before the Unregister frame, not lost with
// the connection.
func TestUnregisterFlushesAcks(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "pair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	ours, broker := conn(fds[0]), conn(fds[1])
	c := &control{conn: ours, coalesce: true}
	tok := newToken()
	c.ack(1, tok, true, "")
	c.ack(2, tok, true, "")
	c.unregister()

	_ = broker.SetReadDeadline(time.Now().Add(waitTimeout))
	for i := uint64(1); i <= 2; i++ {
		f, err := wire.ReadFrame(broker, wire.MaxBody)
		if err != nil {
			t.Fatalf("ACK %d: %v", i, err)
		}
		if a, err := wire.DecodeHandoffAck(f.GetPayload()); err != nil || f.GetPayloadProtocol() != wire.ProtocolHandoff || a.GetCorrelationId() != i {
			t.Fatalf("frame %d: protocol 0x%04x, %v (%v), want ACK %d", i, f.GetPayloadProtocol(), a, err, i)
		}
	}
	f, err := wire.ReadFrame(broker, wire.MaxBody)
	if err != nil {
		t.Fatalf("Unregister: %v", err)
	}
	if m, err := wire.DecodeBackendControl(f.GetPayload()); err != nil || m.GetUnregister() == nil {
		t.Fatalf("after the ACKs: %v (%v), want Unregister", m, err)
	}
}
