package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// ColdSample is one cold start: a Hello for a service whose backend is not
// running, against the same backend binary started standalone.
type ColdSample struct {
	Round   int    `json:"round"`
	Service string `json:"service"`
	// HelloToEchoNS: client.Dial of the stopped service until the 64-byte
	// echo was read (and the connection closed).
	HelloToEchoNS int64  `json:"hello_to_echo_ns"`
	Route         string `json:"route"`
	// ExecToListenNS: the bench starts `portier __echo-backend --listen P`
	// itself; from just before exec until a connect to P succeeds.
	ExecToListenNS int64 `json:"exec_to_listening_ns"`
	// ExecToEchoNS: the same, until the 64-byte echo was read.
	ExecToEchoNS int64 `json:"exec_to_echo_ns"`
}

func (e *env) coldSample(round, i int) (ColdSample, error) {
	svc := coldService(round, i)
	cs := ColdSample{Round: round, Service: svc}
	var err error
	if cs.ExecToListenNS, cs.ExecToEchoNS, err = e.execToListening(fmt.Sprintf("standalone-%d-%d.sock", round, i)); err != nil {
		return cs, err
	}
	// The client warms its own code paths on the running echo service
	// first, so the sample is the broker's cold start, not the client's.
	run, err := e.runClient("cold client "+svc, "--strategy", stratHandoff, "--mode", "rtt",
		"--service", svc, "--warm-service", svcEcho, "--warmup", "50", "--conns", "1", "--concurrency", "1")
	if err != nil {
		return cs, err
	}
	var r RTTResult
	if err := json.Unmarshal([]byte(run.line), &r); err != nil {
		return cs, fmt.Errorf("cold client: bad result %q: %w", run.line, err)
	}
	if r.N != 1 {
		return cs, fmt.Errorf("cold start of %s failed: %s", svc, r.FirstError)
	}
	cs.HelloToEchoNS = r.P50NS
	for route := range r.Routes {
		cs.Route = route
	}
	e.stopBackend(svc)
	e.logf("  cold start %s: Hello→echo %.2f ms (route %s); standalone exec→listening %.2f ms, exec→echo %.2f ms",
		svc, float64(cs.HelloToEchoNS)/1e6, cs.Route, float64(cs.ExecToListenNS)/1e6, float64(cs.ExecToEchoNS)/1e6)
	return cs, nil
}

// execToListening starts the echo backend standalone and times it until
// its socket accepts a connection, and until it echoed 64 bytes.
func (e *env) execToListening(name string) (listen, echo int64, err error) {
	path := filepath.Join(e.runDir, name)
	cmd := exec.Command(e.exe, cmdEcho, "--listen", path)
	cmd.Env = childEnv()
	cmd.SysProcAttr = childSysProcAttr()
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	var c net.Conn
	for {
		c, err = net.Dial("unix", path)
		if err == nil {
			break
		}
		if time.Since(t0) > startupTimeout {
			return 0, 0, fmt.Errorf("standalone echo backend did not listen on %s within %s: %w", path, startupTimeout, err)
		}
		// Polling every 100 µs bounds the error of the figure to that.
		time.Sleep(100 * time.Microsecond)
	}
	listen = int64(time.Since(t0))
	defer c.Close()
	var msg, back [payloadSize]byte
	copy(msg[:], "cold")
	if _, err := c.Write(msg[:]); err != nil {
		return 0, 0, err
	}
	if _, err := io.ReadFull(c, back[:]); err != nil {
		return 0, 0, err
	}
	return listen, int64(time.Since(t0)), nil
}

// HerdSample is one burst of concurrent Hellos to a stopped service.
type HerdSample struct {
	Round   int            `json:"round"`
	Service string         `json:"service"`
	Hellos  int            `json:"hellos"`
	Served  int            `json:"served"`
	Spawns  int            `json:"spawns"`
	P50NS   int64          `json:"p50_ns"`
	MaxNS   int64          `json:"max_ns"`
	Routes  map[string]int `json:"routes"`
	Error   string         `json:"first_error,omitempty"`
}

func (e *env) herdSample(round int) (HerdSample, error) {
	svc := herdService(round)
	h := HerdSample{Round: round, Service: svc, Hellos: e.cfg.Herd}
	run, err := e.runClient("herd client "+svc, "--strategy", stratHandoff, "--mode", "rtt",
		"--service", svc, "--warm-service", svcEcho, "--warmup", "50",
		"--conns", strconv.Itoa(e.cfg.Herd), "--concurrency", strconv.Itoa(e.cfg.Herd))
	if err != nil {
		return h, err
	}
	var r RTTResult
	if err := json.Unmarshal([]byte(run.line), &r); err != nil {
		return h, fmt.Errorf("herd client: bad result %q: %w", run.line, err)
	}
	h.Served, h.P50NS, h.MaxNS, h.Routes, h.Error = r.N, r.P50NS, r.MaxNS, r.Routes, r.FirstError
	if h.Spawns, err = e.spawns(svc); err != nil {
		return h, err
	}
	e.stopBackend(svc)
	e.logf("  %d concurrent Hellos to stopped %s: %d spawn(s), %d served, p50 %.2f ms, max %.2f ms, routes %v",
		h.Hellos, svc, h.Spawns, h.Served, float64(h.P50NS)/1e6, float64(h.MaxNS)/1e6, h.Routes)
	return h, nil
}
