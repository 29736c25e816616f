//go:build linux

package broker

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portier/portier/client"
	pb "github.com/portier/portier/wire/portierv1"
	"golang.org/x/sys/unix"
)

// brokerFDs lists the descriptors the broker process holds: the smallest of
// a few looks, so a descriptor the janitor holds for an instant (it lists
// the log directory every second) is not counted.
func brokerFDs(t *testing.T, pid int) []int {
	t.Helper()
	var least []int
	for i := 0; i < 5; i++ {
		ents, err := os.ReadDir("/proc/" + itoa(pid) + "/fd")
		if err != nil {
			t.Fatal(err)
		}
		if least == nil || len(ents) < len(least) {
			least = least[:0]
			for _, e := range ents {
				n, err := strconv.Atoi(e.Name())
				if err != nil {
					t.Fatal(err)
				}
				least = append(least, n)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return least
}

// setFDLimit sets the soft descriptor limit of process pid (the hard limit
// stays, so it can be raised again without privileges) and returns the old
// soft limit.
func setFDLimit(t *testing.T, pid int, soft uint64) uint64 {
	t.Helper()
	var old unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &old); err != nil {
		t.Skipf("cannot read the broker's descriptor limit: %v", err)
	}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: soft, Max: old.Max}, nil); err != nil {
		t.Skipf("cannot set the broker's descriptor limit to %d: %v", soft, err)
	}
	return old.Cur
}

func init() {
	// A backend that never registers: a Hello for it waits, holding its
	// connection's descriptor in the broker, until the start_timeout.
	extraRoles["hang"] = func(ctx context.Context) int { <-ctx.Done(); return 0 }
}

// squeeze leaves the broker in process p exactly spare free descriptors
// and returns the number it holds. The limit bounds descriptor numbers (an
// allocation takes the lowest free number and fails at the limit), so it
// is set right above the broker's own descriptors, plus spare, and the
// numbers still free below it are filled with Hellos that wait for a
// backend that never registers. Descriptors far above (one inherited from
// the test's own parent) stay open and do not matter.
func squeeze(t *testing.T, h *harness, p *brokerProc, spare int) int {
	t.Helper()
	h.define("parked", "1.0.0", "hang", `start_timeout = "2m"`+"\n")
	ageDefinitions(t, h)
	var held []*net.UnixConn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	park := func() *net.UnixConn {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: h.sock, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		if _, err := c.Write(rawHello(t, func(hl *pb.Hello) { hl.ServiceName = "parked" }, nil)); err != nil {
			t.Fatal(err)
		}
		return c
	}
	// The first one starts the parked backend (a start takes descriptors
	// for a moment), and the aged definitions are read once more, while
	// descriptors are free.
	park()
	var pid uint32
	eventually(t, 10*time.Second, "the parked backend started", func() bool {
		for _, b := range mustStatus(t, h.sock).GetBackends() {
			if b.GetServiceName() == "parked" && b.GetPid() != 0 {
				pid = b.GetPid()
				return true
			}
		}
		return false
	})
	killGroupAtCleanup(t, int(pid))
	c, err := h.dial("echo", client.NoHandoff())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()

	// The broker hashes a registered backend's executable once, holding a
	// descriptor while it reads: wait until that is done.
	eventually(t, 10*time.Second, "the echo backend's executable recorded", func() bool {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(h.sock), "state.json"))
		return err == nil && strings.Contains(string(b), `"exe_sha256"`)
	})

	fds := brokerFDs(t, p.pid())
	const far = 64
	limit := 0
	for _, fd := range fds {
		if fd < far {
			limit = max(limit, fd+1)
		}
	}
	old := setFDLimit(t, p.pid(), uint64(limit+spare))
	t.Cleanup(func() { setFDLimit(t, p.pid(), old) })
	// Fill every free number below limit. A parked Hello takes the lowest
	// free number; if a descriptor the broker holds for an instant (the
	// janitor's) took it first, the Hello came in on the reserve and is
	// answered FD_PRESSURE, and another one is parked.
	for attempt := 0; ; attempt++ {
		fds = brokerFDs(t, p.pid())
		hole := -1
		for n := 0; n < limit; n++ {
			if !slices.Contains(fds, n) {
				hole = n
				break
			}
		}
		if hole < 0 {
			return len(fds)
		}
		if attempt > 100 {
			t.Fatalf("cannot fill descriptor %d of the broker: %s", hole, describeFDs(p.pid()))
		}
		c := park()
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			_ = c.SetReadDeadline(time.Now())
			var b [1]byte
			if _, err := c.Read(b[:]); !errors.Is(err, os.ErrDeadlineExceeded) {
				break // answered: park another
			}
			if slices.Contains(brokerFDs(t, p.pid()), hole) {
				break
			}
		}
	}
}

// describeFDs lists a process's descriptors and what they are, for a
// failure message.
func describeFDs(pid int) string {
	ents, _ := os.ReadDir("/proc/" + itoa(pid) + "/fd")
	var out []string
	for _, e := range ents {
		l, _ := os.Readlink("/proc/" + itoa(pid) + "/fd/" + e.Name())
		out = append(out, e.Name()+"="+l)
	}
	return strings.Join(out, " ")
}

// ageDefinitions dates the definitions an hour back, so that the registry
// trusts its stat check instead of re-reading a just-written file (which
// would take a descriptor) on each Hello.
func ageDefinitions(t *testing.T, h *harness) {
	t.Helper()
	old := time.Now().Add(-time.Hour)
	ents, err := os.ReadDir(h.svcDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if err := os.Chtimes(filepath.Join(h.svcDir, e.Name()), old, old); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAcceptEMFILEAnswersFDPressure: a broker without a descriptor to spare
// answers each Hello FD_PRESSURE (retry_after_ms=1000) echoing its
// request_id and trace context, serves `portier status` as usual, tells a
// silent peer FD_PRESSURE too, and serves again once descriptors are free.
func TestAcceptEMFILEAnswersFDPressure(t *testing.T) {
	t.Parallel()
	h := newProcHarness(t)
	h.define("echo", "1.0.0", "echo", "")
	p := startBrokerProc(t, h)
	h.waitListening()
	be := servedBackend(t, h, "echo") // the backend is up before the squeeze

	base := squeeze(t, h, p, 0)
	for i := 0; i < 10; i++ {
		f, r := refusedOf(t, h.sock, rawHello(t, nil, nil), false)
		if r.GetCode() != pb.ErrorCode_ERROR_FD_PRESSURE || r.GetRetryAfterMs() != 1000 {
			t.Fatalf("Hello %d: %v, want FD_PRESSURE with retry_after_ms=1000", i, r)
		}
		checkEcho(t, f)
	}
	// What an operator runs exactly then.
	st, err := adminStatus(h.sock)
	if err != nil {
		t.Fatalf("admin status under pressure: %v", err)
	}
	if !slices.ContainsFunc(st.GetBackends(), func(b *pb.BackendStatus) bool { return b.GetPid() == be.GetPid() }) {
		t.Fatalf("status under pressure: %v", st)
	}
	// A peer that sends nothing learns why it waited.
	if f, r := refusedOf(t, h.sock, nil, false); r.GetCode() != pb.ErrorCode_ERROR_FD_PRESSURE || f.GetRequestId() != 0 {
		t.Fatalf("silent peer: %v", r)
	}
	if _, err := h.dial("echo", client.HandshakeTimeout(2*time.Second)); !errors.Is(err, client.ErrFDPressure) {
		t.Fatalf("client under pressure: %v, want ErrFDPressure", err)
	}

	// With a descriptor back, the broker serves again.
	setFDLimit(t, p.pid(), uint64(base+64))
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

// TestFDReserveSurvivesBurst: with one descriptor to spare, a burst of
// Hellos is answered in full, some Negotiated (on the spare) and some
// FD_PRESSURE (on the reserve); afterwards the broker holds its reserve
// again, so with the spare taken by a silent peer the next Hello is told
// FD_PRESSURE at once instead of waiting for that peer's Hello deadline.
func TestFDReserveSurvivesBurst(t *testing.T) {
	t.Parallel()
	h := newProcHarness(t)
	h.define("echo", "1.0.0", "echo", "")
	p := startBrokerProc(t, h)
	h.waitListening()
	servedBackend(t, h, "echo")

	base := squeeze(t, h, p, 1) // the reserve among them
	const n = 40
	var (
		mu                    sync.Mutex
		negotiated, pressured int
		wg                    sync.WaitGroup
	)
	hello := rawHello(t, nil, nil)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := exchange(t, h.sock, hello, false)
			if err != nil {
				t.Errorf("a Hello of the burst got no answer: %v", err)
				return
			}
			hr := helloReplyOf(t, f)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case hr.GetNegotiated() != nil:
				negotiated++
			case hr.GetRefused().GetCode() == pb.ErrorCode_ERROR_FD_PRESSURE:
				pressured++
			default:
				t.Errorf("burst answer %v", hr)
			}
		}()
	}
	wg.Wait()
	t.Logf("burst of %d: %d negotiated, %d FD_PRESSURE", n, negotiated, pressured)
	if negotiated == 0 || pressured == 0 {
		t.Fatalf("burst: %d negotiated, %d FD_PRESSURE; want both (one descriptor to spare)", negotiated, pressured)
	}

	// The reserve is held again: the broker's descriptors settle where they
	// were before the burst.
	eventually(t, 5*time.Second, "the broker back at its descriptors before the burst", func() bool {
		return len(brokerFDs(t, p.pid())) == base
	})
	filler, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: h.sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer filler.Close()
	eventually(t, 5*time.Second, "the silent peer accepted on the spare", func() bool {
		return len(brokerFDs(t, p.pid())) == base+1
	})
	// The filler's Hello deadline is 5 s; a broker without its reserve would
	// answer only then, and Negotiated.
	f, r := refusedOf(t, h.sock, rawHello(t, nil, nil), false)
	if r.GetCode() != pb.ErrorCode_ERROR_FD_PRESSURE {
		t.Fatalf("with the spare taken: %v, want FD_PRESSURE from the reserve", r)
	}
	checkEcho(t, f)
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
