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
