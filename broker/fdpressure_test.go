//go:build linux

package broker

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/portier/portier/client"
	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// TestAcceptEMFILEAnswersFDPressure: a broker out of descriptors answers
// connections with FD_PRESSURE (retry_after_ms=1000) instead of leaving them
// hanging, and serves again once descriptors are free.
func TestAcceptEMFILEAnswersFDPressure(t *testing.T) {
	t.Parallel()
	h := newProcHarness(t)
	h.define("echo", "1.0.0", "echo", "")
	p := startBrokerProc(t, h)
	h.waitListening()
	be := servedBackend(t, h, "echo") // the backend is up before the squeeze
	killGroupAtCleanup(t, int(be.GetPid()))

	// Leave the broker a handful of descriptors beyond what it holds now.
	fds, err := os.ReadDir("/proc/" + itoa(p.pid()) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	limit := uint64(len(fds) + 8)
	if err := unix.Prlimit(p.pid(), unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: limit, Max: limit}, nil); err != nil {
		t.Skipf("cannot lower the broker's descriptor limit: %v", err)
	}

	// Silent connections hold one broker descriptor each (in the Hello
	// stage, up to its 5 s deadline) until accept fails with EMFILE.
	var held []*net.UnixConn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := 0; i < 40; i++ {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: h.sock, Net: "unix"})
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		held = append(held, c)
	}
	// Some of them must be answered FD_PRESSURE. Read them all at once:
	// the ones in the Hello stage say nothing until their deadline.
	answers := make(chan *pb.HelloReply, len(held))
	deadline := time.Now().Add(3 * time.Second)
	for _, c := range held {
		go func() {
			_ = c.SetReadDeadline(deadline)
			f, err := wire.ReadFrame(c, wire.MaxBody)
			if err != nil {
				answers <- nil // accepted into the Hello stage, or never accepted
				return
			}
			hr := new(pb.HelloReply)
			if err := proto.Unmarshal(f.GetPayload(), hr); err != nil {
				hr = nil
			}
			answers <- hr
		}()
	}
	refused := 0
	for range held {
		hr := <-answers
		if hr == nil {
			continue
		}
		r := hr.GetRefused()
		if r.GetCode() != pb.ErrorCode_ERROR_FD_PRESSURE || r.GetRetryAfterMs() != 1000 {
			t.Fatalf("answer %v, want FD_PRESSURE with retry_after_ms=1000", hr)
		}
		refused++
	}
	// The broker has about 8 descriptors to spare, so most of the 40 must
	// be answered (before the reserve was retaken right after each refusal,
	// only the first one was).
	if refused < len(held)/2 {
		t.Fatalf("%d of %d connections answered FD_PRESSURE while the broker was out of descriptors; want most", refused, len(held))
	}
	t.Logf("%d of %d connections answered FD_PRESSURE", refused, len(held))
	for _, c := range held {
		c.Close()
	}
	held = nil

	// With the descriptors back, the broker serves again.
	eventually(t, 10*time.Second, "a client served after the pressure", func() bool {
		c, err := h.dial("echo", client.HandshakeTimeout(2*time.Second))
		if err != nil {
			if !errors.Is(err, client.ErrFDPressure) {
				t.Logf("dial while recovering: %v", err)
			}
			return false
		}
		defer c.Close()
		echo(t, c, "after pressure")
		return true
	})
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for n >= 10 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	i--
	b[i] = byte('0' + n)
	return string(b[i:])
}
