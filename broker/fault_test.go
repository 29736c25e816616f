//go:build unix

package broker

import (
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portier/portier/client"
	"github.com/portier/portier/handoff"
	"github.com/portier/portier/internal/fdcount"
	pb "github.com/portier/portier/wire/portierv1"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Fault injection: backends that reject, die, stay silent or lie, and peers
// that are not the user. The tests that pass descriptors count them, so they
// do not run in parallel with others (the count is per process).

func counterValue(t *testing.T, c prometheus.Counter) int {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return int(m.GetCounter().GetValue())
}

func (h *harness) handoffFallbacks(stage, reason string) int {
	return counterValue(h.t, h.b.metrics.handoffs.WithLabelValues("fallback", stage, reason))
}

// settle waits until every handoff the broker began has its outcome (and
// the broker has closed its copy of the client socket and counted it).
func (h *harness) settle() {
	h.t.Helper()
	if !h.b.inflight.wait(10 * time.Second) {
		h.t.Fatal("handoffs still in flight after 10s")
	}
}

// warm starts service's backend without offering it a descriptor.
func (h *harness) warm(service string) {
	h.t.Helper()
	c, err := h.dial(service, client.NoHandoff())
	if err != nil {
		h.t.Fatalf("warm-up dial: %v", err)
	}
	echo(h.t, c, "warm")
	c.Close()
}

func TestBackendRejectsOfferClientReconnects(t *testing.T) {
	h := newHarness(t, nil)
	h.define("rej", "1.0.0", "reject", "")
	h.warm("rej")
	base := fdcount.Count(t)
	const n = 3
	for i := 0; i < n; i++ {
		c, err := h.dial("rej")
		if err != nil {
			t.Fatalf("dial %d: %v (a rejected handoff must not be a client error)", i, err)
		}
		if c.Route() != client.Reconnect {
			t.Fatalf("route = %s, want reconnect", c.Route())
		}
		echo(t, c, "served by backend_pipe after a rejected offer")
		c.Close()
	}
	h.settle()
	st := h.b.orch.Stats()
	if st.Attempts != n || st.Completed != 0 {
		t.Fatalf("attempts = %d, completed = %d; want %d, 0", st.Attempts, st.Completed, n)
	}
	if got := st.Fallback(handoff.StageAcknowledge, handoff.ReasonBackendRejected); got != n {
		t.Fatalf("orchestrator backend_rejected fallbacks = %d, want %d (stats %+v)", got, n, st)
	}
	if got := h.handoffFallbacks("acknowledge", "backend_rejected"); got != n {
		t.Fatalf("metric portier_handoffs_total{fallback,acknowledge,backend_rejected} = %d, want %d", got, n)
	}
	eventually(t, 5*time.Second, "broker fd count back to baseline", func() bool { return fdcount.Count(t) <= base })
}

func TestBackendNeverAcksBrokerClosesAtDeadline(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Handoff.AckDeadline = 200 * time.Millisecond })
	h.define("mute", "1.0.0", "hold", "")
	h.warm("mute")
	base := fdcount.Count(t)

	c, err := h.dial("mute", client.ReadyTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatalf("dial: %v (a silent backend must not be a client error)", err)
	}
	if c.Route() != client.Reconnect {
		t.Fatalf("route = %s, want reconnect", c.Route())
	}
	echo(t, c, "served by backend_pipe after the ACK deadline")
	c.Close()
	h.settle()
	st := h.b.orch.Stats()
	if got := st.Fallback(handoff.StageAwaitAck, handoff.ReasonAckTimeout); got != 1 || st.TotalFallbacks() != 1 {
		t.Fatalf("await_ack/ack_timeout fallbacks = %d of %d, want 1 of 1 (%+v)", got, st.TotalFallbacks(), st)
	}
	if got := h.handoffFallbacks("await_ack", "ack_timeout"); got != 1 {
		t.Fatalf("metric portier_handoffs_total{fallback,await_ack,ack_timeout} = %d, want 1", got)
	}
	if st.InFlight != 0 || st.Pending != 0 {
		t.Fatalf("in flight %d, pending tokens %d after the deadline; want 0, 0", st.InFlight, st.Pending)
	}
	eventually(t, 5*time.Second, "broker fd count back to baseline", func() bool { return fdcount.Count(t) <= base })
}

// onlyBackend returns the status of the one live backend.
func (h *harness) onlyBackend() *pb.BackendStatus {
	h.t.Helper()
	st := h.b.status()
	if len(st.GetBackends()) != 1 {
		h.t.Fatalf("backends = %v, want exactly one", st.GetBackends())
	}
	return st.GetBackends()[0]
}

// exposeTestBinary makes the test binary executable by another user: a hard
// link (or else a copy) in a world-readable directory. A link opens no file
// for writing, so a concurrent fork elsewhere in the process cannot make
// the exec fail with ETXTBSY, as it can right after a copy.
func exposeTestBinary(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := shortTempDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "broker.test")
	if fi, err := os.Stat(exe); err == nil && fi.Mode().Perm()&0o005 == 0o005 && os.Link(exe, dst) == nil {
		return dst
	}
	src, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, src); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// runETXTBSY runs cmd, retrying while the exec fails with ETXTBSY (a child
// forked concurrently still holds the copy's write descriptor until it
// execs; see golang/go#22315).
func runETXTBSY(t *testing.T, mk func() *exec.Cmd) ([]byte, error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := mk().CombinedOutput()
		if !errors.Is(err, syscall.ETXTBSY) || time.Now().After(deadline) {
			return out, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestForeignUIDPeerDroppedBeforeAnyRead(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the peer must run as another uid (nobody), which only root can arrange")
	}
	var logs syncBuffer
	h := newHarness(t, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(&logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	h.define("echo", "1.0.0", "echo", "")
	// The private directory keeps other users away from the socket
	// altogether; open it for this test so the broker's own peer check is
	// what stops them.
	for path, mode := range map[string]os.FileMode{h.dir: 0o755, filepath.Dir(h.sock): 0o755, h.sock: 0o777} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	exe := exposeTestBinary(t)
	rejected := counterValue(t, h.b.metrics.peerRejected)

	out, err := runETXTBSY(t, func() *exec.Cmd {
		cmd := exec.Command(exe)
		cmd.Env = []string{roleEnv + "=foreign-peer", envSocket + "=" + h.sock, "GORACE=" + os.Getenv("GORACE")}
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		return cmd
	})
	t.Logf("peer as uid 65534: %s", strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("foreign peer: %v (want the connection closed without a reply)", err)
	}
	if got := counterValue(t, h.b.metrics.peerRejected); got != rejected+1 {
		t.Fatalf("peers rejected = %d, want %d", got, rejected+1)
	}
	if s := logs.String(); !strings.Contains(s, "peer is not this user") || !strings.Contains(s, "peer_uid=65534") {
		t.Fatalf("the refusal was not logged with the peer's uid:\n%s", s)
	}
	// Nothing was read, so nothing was answered, refused or routed.
	text, err := h.b.metrics.text()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(text, "portier_hellos_total") {
		t.Fatalf("a Hello from another uid was processed:\n%s", text)
	}
	if n := h.spawns("echo", "started"); n != 0 {
		t.Fatalf("spawns = %d, want 0", n)
	}
}

// TestMalformedRegistrationRefused: a Register that breaks a wire rule is
// refused by its decoder, with the rule's field, before any identity check.
func TestMalformedRegistrationRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ctrl, rr, err := registerByHand(h.sock, &pb.Register{ServiceName: "Not A Name", Version: "1.0.0", Pid: 1,
		Endpoint: "/x.sock", SpawnSecret: []byte("s"), HandoffCapable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ctrl.Close()
	if rr.GetAccepted() || rr.GetCode() != pb.ErrorCode_ERROR_PEER_REJECTED || !strings.Contains(rr.GetReason(), "service_name") {
		t.Fatalf("answered accepted=%t code=%s (%s); want PEER_REJECTED naming service_name", rr.GetAccepted(), rr.GetCode(), rr.GetReason())
	}
}

func TestForgedRegistrationRefusedAndNeverOffered(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.define("echo", "1.0.0", "echo", "")
	h.define("forged", "1.0.0", "forger", "")
	refused := func() int { return counterValue(t, h.b.metrics.registrations.WithLabelValues("refused")) }

	t.Run("pid the broker did not start", func(t *testing.T) {
		c, err := h.dial("echo")
		if err != nil {
			t.Fatal(err)
		}
		echo(t, c, "warm")
		c.Close()
		genuine := h.onlyBackend()
		before := refused()

		// This test process claims the real backend's identity with a
		// made-up secret; the kernel reports our pid, which the broker
		// never started.
		secret := make([]byte, 32)
		_, _ = rand.Read(secret)
		ctrl, rr, err := registerByHand(h.sock, &pb.Register{ServiceName: "echo", Version: "1.0.0", Pid: genuine.GetPid(),
			Endpoint: genuine.GetEndpoint(), SpawnSecret: secret, HandoffCapable: true})
		if err != nil {
			t.Fatal(err)
		}
		if rr.GetAccepted() || rr.GetCode() != pb.ErrorCode_ERROR_PEER_REJECTED {
			ctrl.Close()
			t.Fatalf("forged registration answered accepted=%t code=%s (%s); want refused with PEER_REJECTED", rr.GetAccepted(), rr.GetCode(), rr.GetReason())
		}
		t.Logf("refused: %s", rr.GetReason())
		if got := refused(); got != before+1 {
			t.Errorf("refused registrations = %d, want %d", got, before+1)
		}
		// While the forged connection is open on our side, Hellos keep
		// going to the real backend.
		for i := 0; i < 5; i++ {
			c, err := h.dial("echo")
			if err != nil {
				t.Fatal(err)
			}
			if c.Route() != client.Handoff {
				t.Fatalf("route = %s, want handoff to the real backend", c.Route())
			}
			echo(t, c, "real backend")
			c.Close()
		}
		if now := h.onlyBackend(); now.GetPid() != genuine.GetPid() || now.GetState() != "registered" {
			t.Fatalf("backend now %v, want pid %d registered", now, genuine.GetPid())
		}
		if got := drainForged(ctrl, rr, nil); got != "accepted=false code=ERROR_PEER_REJECTED frames=0 fds=0 end=eof" {
			t.Fatalf("forged control connection: %s; want EOF with no frame and no descriptor", got)
		}
	})

	t.Run("spawned pid with a wrong secret", func(t *testing.T) {
		before := refused()
		// The forger is started by the broker (right pid and start time)
		// but first registers with a wrong secret; then it registers
		// properly and serves.
		c, err := h.dial("forged")
		if err != nil {
			t.Fatal(err)
		}
		if c.Route() != client.Handoff {
			t.Fatalf("route = %s, want handoff once properly registered", c.Route())
		}
		echo(t, c, "properly registered")
		c.Close()
		got, err := os.ReadFile(filepath.Join(filepath.Dir(h.sock), forgerResultFile))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "accepted=false code=ERROR_PEER_REJECTED frames=0 fds=0 end=eof" {
			t.Fatalf("wrong-secret registration: %s; want refused with PEER_REJECTED, then EOF with no frame and no descriptor", got)
		}
		if got := refused(); got != before+1 {
			t.Errorf("refused registrations = %d, want %d", got, before+1)
		}
	})
}

// onlyBackendState returns the state status gives the backend pid, "" when
// it lists none such.
func (h *harness) onlyBackendState(pid uint32) string {
	for _, b := range h.b.status().GetBackends() {
		if b.GetPid() == pid {
			return b.GetState()
		}
	}
	return ""
}
