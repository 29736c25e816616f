//go:build linux

package broker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portier/portier/internal/ipc"
	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
	"google.golang.org/protobuf/proto"
)

// Parked Hellos (issue 10 item 4): a client that leaves while its Hello
// waits for a backend start has its socket released at once.

// adminMetrics returns the Prometheus text of the broker on sock.
func adminMetrics(sock string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := ipc.Dial(ctx, sock)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	f, err := wire.NewRequest(wire.ProtocolAdmin, 1, &pb.AdminRequest{Verb: &pb.AdminRequest_Metrics{Metrics: &pb.MetricsRequest{}}})
	if err != nil {
		return "", err
	}
	if err := wire.WriteFrame(c, f); err != nil {
		return "", err
	}
	rf, err := wire.ReadFrame(c, wire.MaxBody)
	if err != nil {
		return "", err
	}
	resp := new(pb.AdminResponse)
	if err := proto.Unmarshal(rf.GetPayload(), resp); err != nil {
		return "", err
	}
	return resp.GetMetricsText(), nil
}

// metricOf returns the value of the unlabelled series name in Prometheus
// text, NaN when it is absent.
func metricOf(text, name string) float64 {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			if err == nil {
				return v
			}
		}
	}
	return math.NaN()
}

// procFDs counts the open descriptors of process pid.
func procFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// dialRetry connects to sock, retrying while the listen queue is full.
func dialRetry(t *testing.T, sock string) *net.UnixConn {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
		if err == nil {
			return c
		}
		if !errors.Is(err, syscall.EAGAIN) || time.Now().After(deadline) {
			t.Fatalf("dial %s: %v", sock, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestParkedClientsThatLeaveReleaseTheirSockets: 10,000 clients send a
// Hello (each followed by early data, which a peek at the socket could not
// see past) for a backend that takes minutes to start, so the broker parks
// them all; it does so without a goroutine per Hello (once its connection
// workers idled out, it runs under 100). Then they all close.
// Long before the backend's start could end (start_timeout is 5 minutes,
// the wait here 30 s) the broker (a process of its own) holds no more
// descriptors than before they came, and it has counted each of them; the
// backend's start goes on, and a later client is told it is still
// starting. How fast they come back is a speed, measured by `portier
// bench` (`parked_close` in its --json), not asserted here.
func TestParkedClientsThatLeaveReleaseTheirSockets(t *testing.T) {
	t.Parallel()
	const n = 10000
	h := newProcHarness(t)
	h.defineSlow("cold", time.Hour, "start_timeout = \"5m\"\n")
	bp := startBrokerProc(t, h)
	eventually(t, 10*time.Second, "the broker to answer", func() bool { _, err := adminStatus(h.sock); return err == nil })
	// The first Hello starts the backend (whose process the broker holds
	// from then on) and is told at its deadline that it is still starting.
	stillStarting := func() {
		t.Helper()
		deadline := uint64(time.Now().Add(300 * time.Millisecond).UnixMilli())
		_, r := refusedOf(t, h.sock, rawHello(t, func(hl *pb.Hello) { hl.ServiceName = "cold" },
			func(f *pb.Frame) { f.DeadlineUnixMs = deadline }), false)
		if r.GetCode() != pb.ErrorCode_ERROR_BACKEND_SPAWN_FAILED || !strings.Contains(r.GetReason(), "still starting") {
			t.Fatalf("a Hello with a deadline: %v, want BACKEND_SPAWN_FAILED, still starting", r)
		}
	}
	stillStarting()
	st := mustStatus(t, h.sock)
	if len(st.GetBackends()) != 1 || st.GetBackends()[0].GetState() != "starting" {
		t.Fatalf("backends = %v, want one starting", st.GetBackends())
	}
	killGroupAtCleanup(t, int(st.GetBackends()[0].GetPid()))
	base := procFDs(t, bp.pid())

	hello := append(rawHello(t, func(hl *pb.Hello) { hl.ServiceName = "cold" }, nil), "early data"...)
	clients := make([]*net.UnixConn, 0, n)
	t.Cleanup(func() {
		for _, c := range clients {
			c.Close()
		}
	})
	for range n {
		c := dialRetry(t, h.sock)
		clients = append(clients, c)
		if _, err := c.Write(hello); err != nil {
			t.Fatalf("hello %d: %v", len(clients), err)
		}
	}
	var text string
	eventually(t, 60*time.Second, "every Hello to be parked", func() bool {
		var err error
		text, err = adminMetrics(h.sock)
		return err == nil && metricOf(text, "portier_parked_hellos") == n
	})
	// No goroutine per parked Hello: once the connection workers that read
	// the Hellos have idled out (workerIdle; they are reused, so a burst
	// leaves many for a while), the broker runs a few dozen goroutines
	// with every Hello still parked. Asked once a second: each request
	// keeps one worker busy for another workerIdle.
	for settle := time.Now().Add(workerIdle + 10*time.Second); ; time.Sleep(time.Second) {
		var err error
		if text, err = adminMetrics(h.sock); err != nil {
			t.Fatal(err)
		}
		g := metricOf(text, "go_goroutines")
		if g < 100 {
			break
		}
		if time.Now().After(settle) {
			t.Fatalf("the broker still runs %v goroutines for %d parked Hellos; want far fewer than one each", g, n)
		}
	}
	if got := metricOf(text, "portier_parked_hellos"); got != n {
		t.Fatalf("portier_parked_hellos = %v with every client waiting, want %d", got, n)
	}
	held := procFDs(t, bp.pid())
	if held < base+n*9/10 {
		t.Fatalf("broker descriptors with %d parked clients: %d, baseline %d", n, held, base)
	}

	closed := time.Now()
	for _, c := range clients {
		c.Close()
	}
	clients = nil
	var back time.Duration
	eventually(t, 30*time.Second, "broker descriptors back to baseline", func() bool {
		if got := procFDs(t, bp.pid()); got <= base {
			back = time.Since(closed)
			return true
		}
		return false
	})
	t.Logf("%d parked clients closed: broker descriptors %d -> %d -> %d, back %s after the last close",
		n, base, held, procFDs(t, bp.pid()), back.Round(time.Millisecond))
	text, err := adminMetrics(h.sock)
	if err != nil {
		t.Fatal(err)
	}
	if got := metricOf(text, "portier_parked_hellos_abandoned_total"); got != n {
		t.Errorf("portier_parked_hellos_abandoned_total = %v, want %d", got, n)
	}
	if got := metricOf(text, "portier_parked_hellos"); got != 0 {
		t.Errorf("portier_parked_hellos = %v after every client left, want 0", got)
	}
	// The start goes on for whoever comes next.
	stillStarting()
	if st := mustStatus(t, h.sock); len(st.GetBackends()) != 1 || st.GetBackends()[0].GetState() != "starting" {
		t.Fatalf("backends after the clients left = %v, want the one still starting", st.GetBackends())
	}
}

// TestParkedHalfClosedClientStillAnswered: a client that shuts down its
// sending side after its Hello has not left: it may still read its answer,
// so the broker keeps its parked Hello and answers it once the backend is
// ready.
func TestParkedHalfClosedClientStillAnswered(t *testing.T) {
	h := newHarness(t, nil)
	h.defineSlow("slow1", time.Second, "")
	f, err := exchange(t, h.sock, rawHello(t, func(hl *pb.Hello) { hl.ServiceName = "slow1" }, nil), true)
	if err != nil {
		t.Fatalf("no answer to a half-closed parked Hello: %v", err)
	}
	if neg := helloReplyOf(t, f).GetNegotiated(); neg == nil || neg.GetBackendPipe() == "" {
		t.Fatalf("reply %v, want Negotiated", helloReplyOf(t, f))
	}
	if n := counterValue(t, h.b.metrics.parkedLeft); n != 0 {
		t.Fatalf("%d parked Hellos counted as abandoned, want 0", n)
	}
}
