//go:build unix

package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portier/portier/backend"
	"github.com/portier/portier/client"
	"github.com/portier/portier/internal/fdcount"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches url over real HTTP and parses the body with Prometheus'
// own text parser, with the strict (legacy) metric-name rules.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("the exposition does not parse: %v", err)
	}
	return mfs
}

// sample returns the value of the series of family name whose labels
// include want, and whether there is exactly one such series.
func sample(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	var v float64
	n := 0
	for _, m := range mfs[name].GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		match := true
		for k, wv := range want {
			if labels[k] != wv {
				match = false
			}
		}
		if match {
			n++
			switch {
			case m.GetCounter() != nil:
				v = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				v = m.GetGauge().GetValue()
			case m.GetUntyped() != nil:
				v = m.GetUntyped().GetValue()
			}
		}
	}
	return v, n == 1
}

// serveMetrics serves the broker's MetricsHandler on a loopback port, as
// `portier serve --metrics-listen` does, and returns its /metrics URL.
func serveMetrics(t *testing.T, b *Broker) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", b.MetricsHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	})
	return "http://" + ln.Addr().String() + "/metrics"
}

// TestMetricsOverHTTP: a real broker routes a handoff, a reconnect, a
// version refusal and an unknown service; its metrics, fetched over HTTP
// and parsed by Prometheus' parser, count Hellos by service and result,
// describe the live backend (with the live connections it reports), and
// include the Go runtime and process collectors. The admin text carries the same families.
func TestMetricsOverHTTP(t *testing.T) {
	h := newHarness(t, nil)
	h.define("echo", "1.0.0", "echo", "")
	url := serveMetrics(t, h.b)

	c, err := h.dial("echo", client.AwaitReady())
	if err != nil {
		t.Fatal(err)
	}
	echo(t, c, "one")
	if c.Route() != client.Handoff {
		t.Fatalf("route %v, want handoff", c.Route())
	}
	c.Close()
	c, err = h.dial("echo", client.NoHandoff())
	if err != nil {
		t.Fatal(err)
	}
	echo(t, c, "two")
	c.Close()
	var refused *client.RefusedError
	if _, err := h.dial("echo", client.Version("2.0.0")); !errors.As(err, &refused) {
		t.Fatalf("dial echo@2.0.0 = %v, want a refusal", err)
	}
	if _, err := h.dial("nosuch"); !errors.As(err, &refused) {
		t.Fatalf("dial nosuch = %v, want a refusal", err)
	}

	hello := func(mfs map[string]*dto.MetricFamily, service, outcome string) float64 {
		v, _ := sample(mfs, "portier_hellos_total", map[string]string{"service": service, "outcome": outcome})
		return v
	}
	var mfs map[string]*dto.MetricFamily
	// The handoff is counted when the backend's ACK arrives, which may be
	// after the echo came back.
	eventually(t, 10*time.Second, "the handoff to be counted", func() bool {
		mfs = scrape(t, url)
		return hello(mfs, "echo", "handoff") == 1
	})
	for _, tc := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"service": "echo", "outcome": "handoff"}, 1},
		{map[string]string{"service": "echo", "outcome": "reconnect"}, 1},
		{map[string]string{"service": "echo", "outcome": "refused", "reason": "ERROR_VERSION_BLOCKED"}, 1},
		// A name that resolved to no definition is not a label value.
		{map[string]string{"service": "", "outcome": "refused", "reason": "ERROR_SERVICE_UNKNOWN"}, 1},
	} {
		if v, ok := sample(mfs, "portier_hellos_total", tc.labels); !ok || v != tc.want {
			t.Errorf("portier_hellos_total%v = %v (found %v), want %v", tc.labels, v, ok, tc.want)
		}
	}
	for _, m := range mfs["portier_hellos_total"].GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetValue() == "nosuch" {
				t.Errorf("an unknown service name became a label: %v", m)
			}
		}
	}

	st := h.b.status()
	if len(st.Backends) != 1 {
		t.Fatalf("status lists %d backends, want 1", len(st.Backends))
	}
	pid := strconv.Itoa(int(st.Backends[0].Pid))
	if v, ok := sample(mfs, "portier_backends", map[string]string{"service": "echo", "version": "1.0.0", "state": "registered"}); !ok || v != 1 {
		t.Errorf("portier_backends{echo,registered} = %v (found %v), want 1", v, ok)
	}
	if v, ok := sample(mfs, "portier_backend_routed_connections_total", map[string]string{"service": "echo", "pid": pid}); !ok || v != 2 {
		t.Errorf("portier_backend_routed_connections_total{echo,pid %s} = %v (found %v), want 2", pid, v, ok)
	}
	if v, ok := sample(mfs, "portier_backend_start_time_seconds", map[string]string{"service": "echo", "pid": pid}); !ok || v < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Errorf("portier_backend_start_time_seconds = %v (found %v)", v, ok)
	}
	// The backend reports the connections it holds: one open, then none.
	live := func() float64 {
		v, _ := sample(scrape(t, url), "portier_backend_live_connections", map[string]string{"service": "echo", "pid": pid})
		return v
	}
	held, err := h.dial("echo", client.AwaitReady())
	if err != nil {
		t.Fatal(err)
	}
	echo(t, held, "held")
	eventually(t, 10*time.Second, "portier_backend_live_connections to be 1", func() bool { return live() == 1 })
	held.Close()
	eventually(t, 10*time.Second, "portier_backend_live_connections to be 0", func() bool { return live() == 0 })
	for _, name := range []string{"go_goroutines", "go_memstats_heap_inuse_bytes", "process_open_fds", "process_resident_memory_bytes"} {
		if v, ok := sample(mfs, name, nil); !ok || v <= 0 {
			t.Errorf("%s = %v (found %v), want a positive value", name, v, ok)
		}
	}

	// `portier metrics` reads the same registry.
	text, err := h.b.metrics.text()
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	admin, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("admin metrics text does not parse: %v", err)
	}
	for name := range mfs {
		if _, ok := admin[name]; !ok {
			t.Errorf("admin metrics lack %s", name)
		}
	}
}

// activatedListener binds path the way a service manager does and returns
// a listener over a duplicate of its descriptor, as a socket-activated
// process gets it; the manager's own descriptor is closed when the test
// ends.
func activatedListener(t *testing.T, path string) (manager, handed *net.UnixListener) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	manager, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	manager.SetUnlinkOnClose(false)
	t.Cleanup(func() { manager.Close(); os.Remove(path) })
	f, err := manager.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	return manager, ln.(*net.UnixListener)
}

// TestServeHandedOverListener: a broker given a listener bound by someone
// else takes its path as Socket, says when it is ready and when it stops,
// serves a client through a real backend, and leaves the socket file (and
// the manager's descriptor, which still queues clients) when it stops.
func TestServeHandedOverListener(t *testing.T) {
	before := fdcount.Count(t)
	dir := shortTempDir(t)
	sock := filepath.Join(dir, "run", "broker.sock")
	svcDir := filepath.Join(dir, "svc")
	if err := os.Mkdir(svcDir, 0o700); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dir: dir, sock: sock, svcDir: svcDir}
	h.define("echo", "1.0.0", "echo", "")
	manager, handed := activatedListener(t, sock)

	var mu sync.Mutex
	var events []string
	note := func(e string) func() {
		return func() { mu.Lock(); events = append(events, e); mu.Unlock() }
	}
	ready := make(chan struct{})
	b, err := New(Config{Listener: handed, ServicesDir: svcDir, StopBackendsOnExit: true,
		Logger: h.logger(), OnReady: func() { note("ready")(); close(ready) }, OnStopping: note("stopping")})
	if err != nil {
		t.Fatal(err)
	}
	if b.cfg.Socket != sock {
		t.Fatalf("Socket = %q, want the listener's path %q", b.cfg.Socket, sock)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- b.Serve(ctx) }()
	select {
	case <-ready:
	case err := <-served:
		t.Fatalf("Serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("OnReady was not called")
	}
	c, err := h.dial("echo", client.AwaitReady())
	if err != nil {
		t.Fatal(err)
	}
	echo(t, c, "activated")
	if c.Route() != client.Handoff {
		t.Errorf("route %v, want handoff", c.Route())
	}
	c.Close()

	stop()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("broker did not stop")
	}
	mu.Lock()
	if strings.Join(events, ",") != "ready,stopping" {
		t.Errorf("hooks ran as %v, want ready then stopping", events)
	}
	mu.Unlock()
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("the broker removed the socket it was handed: %v", err)
	}
	// The manager still listens: a client connecting now waits in its queue
	// for the next broker instead of finding nothing.
	nc, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("dial the manager's socket after the broker stopped: %v", err)
	}
	nc.Close()
	sc, err := manager.Accept()
	if err != nil {
		t.Fatal(err)
	}
	sc.Close()
	manager.Close()
	if after := fdcount.Count(t); after != before {
		t.Errorf("descriptors: %d before, %d after", before, after)
	}
}

// TestHandedOverListenerChecks: Socket must agree with the listener, and a
// listener in a directory others can enter is refused (and closed) by
// Serve, as a bound socket would be.
func TestHandedOverListenerChecks(t *testing.T) {
	dir := shortTempDir(t)
	_, handed := activatedListener(t, filepath.Join(dir, "run", "broker.sock"))
	defer handed.Close()
	if _, err := New(Config{Listener: handed, Socket: filepath.Join(dir, "other.sock"), ServicesDir: dir}); err == nil || !strings.Contains(err.Error(), "not the handed-over listener's path") {
		t.Errorf("New with a mismatched Socket = %v", err)
	}

	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	_, handed2 := activatedListener(t, filepath.Join(open, "broker.sock"))
	b, err := New(Config{Listener: handed2, ServicesDir: dir, StateDir: filepath.Join(dir, "state"), Logger: (&harness{t: t}).logger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Serve(t.Context()); err == nil || !strings.Contains(err.Error(), "0700") {
		t.Fatalf("Serve on a socket in a 0755 directory = %v, want the private-directory refusal", err)
	}
	if _, err := handed2.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve did not close the refused listener: %v", err)
	}
}

func (h *harness) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{h.t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestBackendEnvWithoutServiceManagerVars: a broker run by systemd has
// NOTIFY_SOCKET and may have WATCHDOG_*; the backends it starts get
// neither, so their own sd_notify calls cannot speak for the broker.
func TestBackendEnvWithoutServiceManagerVars(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "/run/user/0/systemd/notify")
	t.Setenv("WATCHDOG_USEC", "1000000")
	t.Setenv("PTEST_KEPT", "yes")
	h := newHarness(t, nil)
	h.define("env", "1.0.0", "print-env", "")
	c, err := h.dial("env")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "NOTIFY_SOCKET= WATCHDOG_USEC= PTEST_KEPT=yes" {
		t.Errorf("backend environment: %q", got)
	}
}

func init() {
	extraRoles["print-env"] = func(ctx context.Context) int {
		l, err := backend.Listen(ctx)
		if err != nil {
			return 1
		}
		defer l.Close()
		c, err := l.Accept()
		if err != nil {
			return 1
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(c, "NOTIFY_SOCKET="+os.Getenv("NOTIFY_SOCKET")+" WATCHDOG_USEC="+os.Getenv("WATCHDOG_USEC")+" PTEST_KEPT="+os.Getenv("PTEST_KEPT"))
		return 0
	}
}
