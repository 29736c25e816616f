//go:build unix

package broker

import (
	"errors"
	"net"
	"runtime/debug"
	"syscall"
	"testing"
	"time"

	"github.com/portier/portier/handoff"
	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// A client that cannot take the Negotiated reply (it shut down its read side,
// so the broker's write fails with EPIPE) must not leave the broker holding
// the connection, on the handoff route and on the reconnect route alike.
func TestNegotiatedWriteFailureClosesClientSocket(t *testing.T) {
	// A leaked *net.UnixConn is closed by its finalizer at some GC; keep GC
	// from hiding the leak.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	h := newHarness(t, nil)
	h.define("echo", "1.0.0", "echo", "")
	h.warm("echo")

	var conns []*net.UnixConn
	for _, caps := range []uint64{wire.CapHandlePassing, 0} {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: h.sock, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
		if err := c.CloseRead(); err != nil {
			t.Fatal(err)
		}
		f, err := wire.NewRequest(wire.ProtocolControl, 1, &pb.Hello{
			ClientMinProtocol: wire.ProtocolVersion, ClientMaxProtocol: wire.ProtocolVersion,
			ServiceName: "echo", WantedVersion: "1.0.0", ClientCapabilities: caps,
		})
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := wire.WriteFrame(c, f); err != nil {
			t.Fatal(err)
		}
	}
	// Both Hellos reached route (which numbers connections before it writes
	// Negotiated); the warm-up was connection 1.
	eventually(t, 5*time.Second, "both Hellos routed", func() bool { return h.b.connIDs.Load() == 3 })
	h.settle()
	for i, c := range conns {
		// Once the broker has closed its end, a write fails (EPIPE).
		eventually(t, 5*time.Second, "the broker to close client connection "+string(rune('1'+i)), func() bool {
			_ = c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
			_, err := c.Write([]byte{0})
			return errors.Is(err, syscall.EPIPE)
		})
	}
	if got := h.b.orch.Stats().Fallback(handoff.StageTransfer, handoff.ReasonTransferFailed); got != 1 {
		t.Fatalf("transfer/transfer_failed fallbacks = %d, want 1 (the handoff's Negotiated write failed)", got)
	}
}
