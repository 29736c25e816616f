package soak

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/portier/portier/client"
)

// Bounds of the soak's own waits. They detect a stuck broker; they never
// measure speed.
const (
	brokerStartWait = 10 * time.Second
	brokerExitWait  = 15 * time.Second
	cliWait         = 10 * time.Second
	probeWait       = 15 * time.Second
	backendExitWait = 5 * time.Second
	// stuckGrace is how long after HungAfter the end of the soak waits for
	// a worker before it counts the worker's attempt as hung.
	stuckGrace = 5 * time.Second
	// errorPause slows a worker down after a failed attempt, as a real
	// client's retry would, so that an outage is not counted ten thousand
	// times over.
	errorPause = 10 * time.Millisecond
	// quietWait lets in-flight handoff ACKs and admin connections finish
	// before a quiet point is measured.
	quietWait = 500 * time.Millisecond
	// quietTries bounds the attempts at a complete quiet point.
	quietTries = 3
)

// mode is how a client dials.
type mode uint8

const (
	modeHandoff   mode = iota // handoff route: a Hello every time (NoHelloSkip)
	modeHelloSkip             // the default options: hello-skip cache, direct route once cached
	modeEarlyData             // first request travels with the Hello (NoHelloSkip)
)

// modes is the rotation of each client: half handoff, a quarter each of
// the default options (the fast path) and EarlyData.
var modes = [...]mode{modeHandoff, modeHelloSkip, modeHandoff, modeEarlyData}

// Run runs a soak: it starts a broker on a private temporary directory,
// measures a quiet point, runs the clients and the chaos for
// Config.Duration, lets the system settle, measures again, stops
// everything it started and returns the report. An error means the soak
// itself could not run (no broker came up, the services could not be
// reached before the chaos); a report may come with it.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	rp, err := acquireReaper()
	if err != nil {
		return nil, err
	}
	defer releaseReaper()
	var idb [8]byte
	_, _ = rand.Read(idb[:])
	r := &runner{cfg: cfg, rp: rp, id: hex.EncodeToString(idb[:]), restarts: map[string]int{}, killedAt: map[int]time.Time{}, hellos: map[string]int64{}}
	r.progress = cfg.Progress
	if r.progress == nil {
		r.progress = io.Discard
	}
	// Short: socket paths must stay under 108 bytes.
	if r.dir, err = os.MkdirTemp("", "psk"); err != nil {
		return nil, err
	}
	if !cfg.KeepDir {
		defer os.RemoveAll(r.dir)
	}
	r.runDir, r.svcDir = filepath.Join(r.dir, "run"), filepath.Join(r.dir, "services")
	r.sock = filepath.Join(r.runDir, "broker.sock")
	if err := r.writeServices(); err != nil {
		return nil, err
	}
	defer r.teardown()

	rep := &Report{Settings: cfg.settings()}
	if cfg.KeepDir {
		rep.Dir = r.dir
	}
	if err := r.startBroker(); err != nil {
		return nil, err
	}
	r.logf("broker up on %s; warming up", r.sock)
	rep.Before = r.measure()
	if rep.Before.Err != "" && !cfg.unmeasured {
		return rep, fmt.Errorf("soak: before the chaos: %s", rep.Before.Err)
	}
	r.logf("baseline: broker %d fds, %d backends", rep.Before.Broker.FDs, len(rep.Before.Listed))

	stop := make(chan struct{})
	abort := make(chan struct{})
	var workers, chaos sync.WaitGroup
	var running atomic.Int64
	begin := time.Now()
	seed := mrand.Uint64()
	for w := range cfg.Clients {
		workers.Add(1)
		running.Add(1)
		go func() {
			defer workers.Done()
			defer running.Add(-1)
			r.client(w, seed, stop)
		}()
	}
	for i := range cfg.LongLived {
		workers.Add(1)
		running.Add(1)
		go func() {
			defer workers.Done()
			defer running.Add(-1)
			r.longLivedLoop(i, seed, stop)
		}()
	}
	if cfg.KillEvery > 0 {
		chaos.Go(func() { r.killer(stop) })
	}
	if cfg.RestartEvery > 0 {
		chaos.Go(func() { r.restarter(stop, abort) })
	}

	t := time.NewTimer(cfg.Duration)
	select {
	case <-t.C:
	case <-ctx.Done():
	case <-abort:
	}
	t.Stop()
	close(stop)
	r.logf("load and chaos stopping")
	allBack := make(chan struct{})
	go func() { workers.Wait(); close(allBack) }()
	select {
	case <-allBack:
	case <-time.After(cfg.HungAfter + stuckGrace):
		n := int(running.Load())
		r.clients.addStuck(n, fmt.Sprintf("a worker did not return within %s of the soak's end", cfg.HungAfter+stuckGrace))
		r.logf("%d workers stuck", n)
	}
	end := time.Now()
	chaos.Wait()
	rep.Elapsed = Duration(end.Sub(begin).Round(time.Millisecond))
	r.mu.Lock()
	fatal := r.fatal
	r.mu.Unlock()
	if fatal != nil {
		rep.fill(r, end)
		return rep, fatal
	}

	// Settling is bounded and short; it happens even when ctx ended the
	// load early, so that the final measurement means the same thing.
	r.logf("settling for %s", cfg.Settle)
	time.Sleep(cfg.Settle)
	rep.After = r.measure()
	r.collectHellos()
	r.teardown() // before fill: the last broker's exit is judged too
	rep.fill(r, end)
	rep.LogFindings = r.logFindings()
	return rep, nil
}

// fill copies the counters; end is the end of the load.
func (rep *Report) fill(r *runner, end time.Time) {
	rep.Clients = r.clients.counts()
	rep.LongLived = r.longLived.counts()
	r.mu.Lock()
	defer r.mu.Unlock()
	rep.BackendKills, rep.KillsSkipped, rep.DeadListed = r.kills, r.killsSkipped, r.deadListed
	rep.BrokerRestarts = map[string]int{"SIGTERM": r.restarts["SIGTERM"], "SIGKILL": r.restarts["SIGKILL"]}
	rep.BrokerBadExits = append([]string(nil), r.badExits...)
	rep.BrokerDown = Duration(r.tl.downTotal(end).Round(time.Millisecond))
	rep.BrokerHellos = maps.Clone(r.hellos)
	rep.BrokerHellosMissed = r.hellosMissed
}

type runner struct {
	cfg      Config
	rp       *reaper
	id       string
	dir      string
	runDir   string
	svcDir   string
	sock     string
	progress io.Writer

	tl        timeline
	clients   tally
	longLived tally

	bmu    sync.Mutex
	broker *brokerProc // nil while none runs

	mu           sync.Mutex
	kills        int
	killsSkipped int
	deadListed   int
	killedAt     map[int]time.Time
	restarts     map[string]int
	badExits     []string
	hellos       map[string]int64 // summed over the brokers
	hellosMissed int              // brokers whose counters could not be read
	fatal        error            // set before abort is closed

	teardownOnce sync.Once
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.progress, "soak %s: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// writeServices writes echo, steady and the extra services.
func (r *runner) writeServices() error {
	if err := os.Mkdir(r.svcDir, 0o700); err != nil {
		return err
	}
	svcs := append([]Service{
		{Name: ServiceEcho, Role: "echo"},
		{Name: ServiceSteady, Role: "echo", IdleTimeout: r.cfg.SteadyIdle},
	}, r.cfg.Extra...)
	for _, s := range svcs {
		var b strings.Builder
		fmt.Fprintf(&b, "name = %q\nversion = \"1.0.0\"\ncommand = [", s.Name)
		for i, a := range r.cfg.Backend {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(strconv.Quote(a))
		}
		b.WriteString("]\n")
		fmt.Fprintf(&b, "env = { %s = %q, %s = %q, %s = %q }\n", RoleEnv, s.Role, RunEnv, r.id, ServiceEnv, s.Name)
		switch {
		case s.IdleTimeout < 0:
			b.WriteString("idle_timeout = \"0\"\n")
		case s.IdleTimeout > 0:
			fmt.Fprintf(&b, "idle_timeout = %q\n", s.IdleTimeout.String())
		}
		if err := os.WriteFile(filepath.Join(r.svcDir, s.Name+".toml"), []byte(b.String()), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// brokerProc is one `portier serve`.
type brokerProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's result, once done is closed
}

func (r *runner) currentBroker() *brokerProc {
	r.bmu.Lock()
	defer r.bmu.Unlock()
	return r.broker
}

// startBroker starts `portier serve` and returns once it answers.
func (r *runner) startBroker() error {
	logf, err := os.OpenFile(filepath.Join(r.dir, "broker.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(r.cfg.Portier, "serve", "--socket", r.sock, "--services", r.svcDir, "--log-level", "info")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = os.Environ()
	if os.Getenv("GORACE") == "" {
		// A race-enabled broker would otherwise sleep a second at exit.
		cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0")
	}
	if err := r.rp.start(cmd); err != nil {
		logf.Close()
		return fmt.Errorf("soak: start broker: %w", err)
	}
	bp := &brokerProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		bp.err = cmd.Wait()
		r.rp.forget(cmd.Process.Pid)
		logf.Close()
		close(bp.done)
	}()
	r.bmu.Lock()
	r.broker = bp
	r.bmu.Unlock()
	// Listening is judged by a successful `portier status`: a bare connect
	// would do too, but the broker rightly counts a peer that closes
	// without a Hello as refused, which would show in its metrics.
	deadline := time.Now().Add(brokerStartWait)
	for {
		if _, err := r.status(); err == nil {
			r.tl.brokerUp(time.Now())
			return nil
		}
		select {
		case <-bp.done:
			return fmt.Errorf("soak: broker exited before listening (%v); see %s", bp.err, filepath.Join(r.dir, "broker.log"))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("soak: broker not listening on %s within %s", r.sock, brokerStartWait)
		}
	}
}

// stopBroker signals the broker and waits for it to exit. A SIGTERMed
// broker must exit 0 within brokerExitWait; otherwise it is recorded and
// killed.
func (r *runner) stopBroker(sig syscall.Signal) {
	r.bmu.Lock()
	bp := r.broker
	r.broker = nil
	r.bmu.Unlock()
	if bp == nil {
		return
	}
	r.tl.brokerDown(time.Now())
	_ = bp.cmd.Process.Signal(sig)
	select {
	case <-bp.done:
	case <-time.After(brokerExitWait):
		r.badExit(fmt.Sprintf("pid %d still running %s after %s; killed", bp.cmd.Process.Pid, brokerExitWait, sig))
		_ = bp.cmd.Process.Kill()
		<-bp.done
		return
	}
	if sig == syscall.SIGTERM && bp.err != nil {
		r.badExit(fmt.Sprintf("pid %d after SIGTERM: %v", bp.cmd.Process.Pid, bp.err))
	}
}

func (r *runner) badExit(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.badExits = append(r.badExits, s)
}

// restarter restarts the broker every RestartEvery, alternating SIGTERM
// and SIGKILL. It always leaves a broker running; if none comes up it sets
// fatal and closes abort.
func (r *runner) restarter(stop <-chan struct{}, abort chan<- struct{}) {
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		case <-time.After(r.cfg.RestartEvery):
		}
		sig := syscall.SIGTERM
		if n%2 == 1 {
			sig = syscall.SIGKILL
		}
		r.logf("broker restart by %s", sigName(sig))
		r.collectHellos()
		r.stopBroker(sig)
		time.Sleep(r.cfg.BrokerDownFor)
		if err := r.startBroker(); err != nil {
			r.mu.Lock()
			r.fatal = err
			r.mu.Unlock()
			close(abort)
			return
		}
		r.mu.Lock()
		r.restarts[sigName(sig)]++
		r.mu.Unlock()
		r.logf("broker up again (pid %d)", r.currentBroker().cmd.Process.Pid)
		r.event("restart " + sigName(sig))
	}
}

// event tells Config.watch about a completed chaos event.
func (r *runner) event(e string) {
	if r.cfg.watch != nil {
		r.cfg.watch(e)
	}
}

func sigName(s syscall.Signal) string {
	if s == syscall.SIGKILL {
		return "SIGKILL"
	}
	return "SIGTERM"
}

// killer SIGKILLs the echo backend every KillEvery. The pid comes from
// `portier status`; before the signal the process must be alive and carry
// this run's marker, so a stale listing never kills a stranger.
func (r *runner) killer(stop <-chan struct{}) {
	t := time.NewTicker(r.cfg.KillEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		rows, err := r.status()
		if err != nil {
			r.count(&r.killsSkipped)
			continue
		}
		killed := false
		for _, row := range rows {
			if row.service != ServiceEcho {
				continue
			}
			if !alive(row.pid) {
				r.mu.Lock()
				if at, ok := r.killedAt[row.pid]; ok && time.Since(at) >= r.cfg.KillEvery/2 {
					r.deadListed++
				}
				r.mu.Unlock()
				continue
			}
			if !hasEnv(row.pid, RunEnv+"="+r.id, ServiceEnv+"="+ServiceEcho) {
				continue
			}
			now := time.Now()
			r.tl.kill(now)
			if syscall.Kill(row.pid, syscall.SIGKILL) == nil {
				r.mu.Lock()
				r.kills++
				r.killedAt[row.pid] = now
				r.mu.Unlock()
				killed = true
				r.logf("killed echo backend pid %d", row.pid)
				r.event("kill")
			}
		}
		if !killed {
			r.count(&r.killsSkipped)
		}
	}
}

func (r *runner) count(n *int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	*n++
}

// statusRow is one backend of `portier status`.
type statusRow struct {
	service, version, state string
	pid                     int
}

func (s statusRow) String() string {
	return fmt.Sprintf("%s %s pid %d %s", s.service, s.version, s.pid, s.state)
}

// status runs `portier status --json` (field names documented in
// docs/CLI.md) and returns its backends.
func (r *runner) status() ([]statusRow, error) {
	out, err := r.cli("status", "--json")
	if err != nil {
		return nil, err
	}
	var st struct {
		Running  bool `json:"running"`
		Backends []struct {
			Service string `json:"service"`
			Version string `json:"version"`
			PID     int    `json:"pid"`
			State   string `json:"state"`
		} `json:"backends"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("portier status --json: %w", err)
	}
	if !st.Running {
		return nil, errors.New("portier status: no broker running")
	}
	rows := make([]statusRow, 0, len(st.Backends))
	for _, b := range st.Backends {
		rows = append(rows, statusRow{service: b.Service, version: b.Version, pid: b.PID, state: b.State})
	}
	return rows, nil
}

// goroutines returns the broker's go_goroutines metric, or its thread
// count when it exports none.
func (r *runner) goroutines(pid int) (int, string, error) {
	out, err := r.cli("metrics")
	if err == nil {
		var m brokerMetrics
		if m, err = parseMetrics(out); err == nil && m.hasGoroutines {
			return m.goroutines, "go_goroutines", nil
		}
	}
	n, terr := threads(pid)
	if terr != nil {
		return 0, "", errors.Join(err, terr)
	}
	return n, "threads; the broker exports no go_goroutines", err
}

// collectHellos adds the running broker's Hello counters to the soak's
// totals; it is called just before the broker is stopped.
func (r *runner) collectHellos() {
	out, err := r.cli("metrics")
	if err != nil {
		r.count(&r.hellosMissed)
		return
	}
	m, err := parseMetrics(out)
	if err != nil {
		r.count(&r.hellosMissed)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, v := range m.hellos {
		r.hellos[k] += v
	}
}

// cli runs `portier <verb> --socket <sock> [args]` and returns its output.
func (r *runner) cli(verb string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cliWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.cfg.Portier, append([]string{verb, "--socket", r.sock}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := r.rp.run(cmd); err != nil {
		return nil, fmt.Errorf("portier %s: %w: %s", verb, err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// measure is quietPoint unless the config skips it.
func (r *runner) measure() QuietPoint {
	if r.cfg.unmeasured {
		return QuietPoint{Err: "not measured"}
	}
	return r.quietPoint()
}

// quietPoint makes sure echo and steady each have a backend (one correct
// round trip each), waits for the broker to finish with those connections
// and measures the broker and its backends. On a loaded machine steady's
// short idle timeout can end its backend in between, and a backend may be
// listed a moment after its exit; so the steps are retried (up to
// quietTries times) until status lists a live echo and steady and nothing
// dead. A backend still listed dead after that is a finding.
func (r *runner) quietPoint() QuietPoint {
	var rows []statusRow
	var errs []string
	for try := 1; ; try++ {
		errs = nil
		for _, svc := range []string{ServiceEcho, ServiceSteady} {
			if err := r.probe(svc); err != nil {
				errs = append(errs, err.Error())
			}
		}
		time.Sleep(quietWait)
		var err error
		if rows, err = r.status(); err != nil {
			errs = append(errs, err.Error())
		}
		if try == quietTries || len(errs) == 0 && complete(rows) {
			break
		}
	}
	var q QuietPoint
	if bp := r.currentBroker(); bp == nil {
		errs = append(errs, "no broker running")
	} else {
		// The admin connection of status closes after its answer.
		time.Sleep(100 * time.Millisecond)
		pid := bp.cmd.Process.Pid
		q.Broker = fdSample(pid)
		n, src, err := r.goroutines(pid)
		if err != nil {
			q.Broker.Err = err.Error()
		}
		q.Broker.Goroutines, q.Broker.GoroutineSource = n, src
	}
	q.Backends = map[string]ProcSample{}
	for _, row := range rows {
		q.Listed = append(q.Listed, row.String())
		if !alive(row.pid) {
			q.Dead = append(q.Dead, row.String())
			continue
		}
		key := row.service
		for i := 2; ; i++ {
			if _, dup := q.Backends[key]; !dup {
				break
			}
			key = fmt.Sprintf("%s#%d", row.service, i)
		}
		q.Backends[key] = fdSample(row.pid)
	}
	socks, _ := filepath.Glob(filepath.Join(r.runDir, "be-*.sock"))
	q.BackendSockets = len(socks)
	q.Err = strings.Join(errs, "; ")
	return q
}

// complete reports whether rows list a live echo and steady backend and
// nothing dead.
func complete(rows []statusRow) bool {
	live := map[string]bool{}
	for _, row := range rows {
		if !alive(row.pid) {
			return false
		}
		live[row.service] = true
	}
	return live[ServiceEcho] && live[ServiceSteady]
}

// probe makes one correct round trip to svc, retrying while the broker
// starts its backend.
func (r *runner) probe(svc string) error {
	deadline := time.Now().Add(probeWait)
	rng := mrand.New(mrand.NewPCG(1, 2))
	for {
		o := r.attempt(svc, modeHandoff, rng)
		if o.kind == kindCorrect {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no correct round trip to %s within %s: last %s", svc, probeWait, describe(o))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func describe(o outcome) string {
	switch o.kind {
	case kindCorrupt:
		return "corrupt: " + o.detail
	case kindHung:
		return "hung: " + o.detail
	}
	return o.key + ": " + o.detail
}

// client is one client goroutine: attempts back to back until stop.
func (r *runner) client(w int, seed uint64, stop <-chan struct{}) {
	rng := mrand.New(mrand.NewPCG(seed, uint64(w)))
	killsApply := r.cfg.Service == ServiceEcho
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		o := r.attempt(r.cfg.Service, modes[(w+i)%len(modes)], rng)
		r.tl.judge(&o, killsApply)
		r.clients.add(o)
		if o.kind == kindError {
			time.Sleep(errorPause)
		}
	}
}

// attempt dials svc in mode m and makes RoundTrips requests, all under one
// deadline HungAfter from the start.
func (r *runner) attempt(svc string, m mode, rng *mrand.Rand) outcome {
	o := outcome{start: time.Now()}
	deadline := o.start.Add(r.cfg.HungAfter)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	first := appendRequest(nil, 0, payload(rng))
	opts := []client.Option{client.Socket(r.sock)}
	switch m {
	case modeHandoff:
		opts = append(opts, client.NoHelloSkip())
	case modeEarlyData:
		opts = append(opts, client.NoHelloSkip(), client.EarlyData(first))
	}
	c, err := client.Dial(ctx, svc, opts...)
	if err != nil {
		return r.failed(o, o.start, err)
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)
	req := first
	for seq := range r.cfg.RoundTrips {
		if seq > 0 {
			req = appendRequest(nil, uint32(seq), payload(rng))
		}
		if seq > 0 || m != modeEarlyData {
			if _, err := c.Write(req); err != nil {
				return r.failed(o, o.start, err)
			}
		}
		if done, ok := r.readEcho(&o, c, req, o.start); !ok {
			return done
		}
	}
	if done, ok := r.readEnd(&o, c, o.start); !ok {
		return done
	}
	o.kind, o.route, o.end = kindCorrect, c.Route(), time.Now()
	return o
}

// readEcho reads the echo of req. It returns ok=false with the finished
// outcome when the echo was wrong or did not come. bounded is when c's
// deadline was set, HungAfter before it.
func (r *runner) readEcho(o *outcome, c net.Conn, req []byte, bounded time.Time) (outcome, bool) {
	got := make([]byte, len(req))
	n, err := io.ReadFull(c, got)
	if n > 0 && !bytes.Equal(got[:n], req[:n]) {
		o.kind, o.end, o.detail = kindCorrupt, time.Now(), corruption(got[:n], req)
		return *o, false
	}
	if err != nil {
		return r.failed(*o, bounded, err), false
	}
	return outcome{}, true
}

// readEnd half-closes c and expects the backend to close without another
// byte: a replayed request the backend saw twice, or a reply sent twice,
// shows up here. bounded is as for readEcho.
func (r *runner) readEnd(o *outcome, c *client.Conn, bounded time.Time) (outcome, bool) {
	if err := c.CloseWrite(); err != nil {
		return r.failed(*o, bounded, err), false
	}
	var extra [256]byte
	n, err := io.ReadFull(c, extra[:])
	if n > 0 {
		o.kind, o.end, o.detail = kindCorrupt, time.Now(), fmt.Sprintf("%d bytes after the last reply: %q", n, extra[:n])
		return *o, false
	}
	if err != io.EOF {
		return r.failed(*o, bounded, err), false
	}
	return outcome{}, true
}

// corruption describes a reply that differs from the request.
func corruption(got, want []byte) string {
	if rest, ok := bytes.CutPrefix(got, []byte(badPrefix)); ok {
		line, _, _ := bytes.Cut(rest, []byte("\n"))
		return "the backend rejected the request: " + string(line)
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return fmt.Sprintf("reply differs from the %d-byte request at byte %d", len(want), i)
}

// failed classifies err; since is when the deadline of the step that
// failed was set, HungAfter before it (the attempt's start, or a
// long-lived connection's request).
func (r *runner) failed(o outcome, since time.Time, err error) outcome {
	o.end = time.Now()
	o.kind, o.key = classify(err, o.end.Sub(since), r.cfg.HungAfter)
	o.detail = err.Error()
	if len(o.detail) > 300 {
		o.detail = o.detail[:300] + "..."
	}
	return o
}

// payload is 16 to 2063 random bytes.
func payload(rng *mrand.Rand) []byte {
	b := make([]byte, 16+rng.IntN(2048))
	for i := 0; i < len(b); i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// longLivedLoop keeps one long-lived connection to steady open at a time.
// The loops start together, so steady sees no Hello for about
// LongLivedFor at a time (longer than its idle_timeout) while connections
// are live.
func (r *runner) longLivedLoop(i int, seed uint64, stop <-chan struct{}) {
	rng := mrand.New(mrand.NewPCG(seed, uint64(1000+i)))
	for {
		select {
		case <-stop:
			return
		default:
		}
		o := r.longConn(rng, stop)
		r.tl.judge(&o, false)
		r.longLived.add(o)
		if o.kind == kindError {
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// longConn is one long-lived connection: a request a second for
// LongLivedFor, each under its own HungAfter deadline.
func (r *runner) longConn(rng *mrand.Rand, stop <-chan struct{}) outcome {
	o := outcome{start: time.Now()}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.HungAfter)
	defer cancel()
	c, err := client.Dial(ctx, ServiceSteady, client.Socket(r.sock))
	if err != nil {
		return r.failed(o, o.start, err)
	}
	defer c.Close()
	n := max(1, int(r.cfg.LongLivedFor/time.Second))
	for seq := range n {
		if seq > 0 && !sleepOrStop(stop, time.Second) {
			o.kind, o.end = kindInterrupted, time.Now()
			return o
		}
		reqStart := time.Now()
		_ = c.SetDeadline(reqStart.Add(r.cfg.HungAfter))
		req := appendRequest(nil, uint32(seq), payload(rng))
		if _, err := c.Write(req); err != nil {
			return r.failed(o, reqStart, err)
		}
		if done, ok := r.readEcho(&o, c, req, reqStart); !ok {
			return done
		}
	}
	endStart := time.Now()
	_ = c.SetDeadline(endStart.Add(r.cfg.HungAfter))
	if done, ok := r.readEnd(&o, c, endStart); !ok {
		return done
	}
	o.kind, o.route, o.end = kindCorrect, c.Route(), time.Now()
	return o
}

func sleepOrStop(stop <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-stop:
		return false
	case <-t.C:
		return true
	}
}

// teardown stops the broker (SIGTERM), then every backend of this run
// (SIGTERM, then SIGKILL), and waits for them to be gone.
func (r *runner) teardown() {
	r.teardownOnce.Do(func() {
		r.stopBroker(syscall.SIGTERM)
		marker := RunEnv + "=" + r.id
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
			pids := marked(marker)
			if len(pids) == 0 {
				return
			}
			for _, pid := range pids {
				_ = syscall.Kill(pid, sig)
			}
			deadline := time.Now().Add(backendExitWait)
			for len(marked(marker)) > 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if left := marked(marker); len(left) > 0 {
			r.logf("backends still running after SIGKILL: %v", left)
		}
	})
}

// logFindings scans the broker's log and the backends' logs for panics and
// data races.
func (r *runner) logFindings() []string {
	files := []string{filepath.Join(r.dir, "broker.log")}
	logs, _ := filepath.Glob(filepath.Join(r.runDir, "logs", "*"))
	files = append(files, logs...)
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, needle := range []string{"WARNING: DATA RACE", "panic: ", "fatal error: "} {
			if n := bytes.Count(b, []byte(needle)); n > 0 {
				out = append(out, fmt.Sprintf("%s: %d x %q", filepath.Base(f), n, needle))
			}
		}
	}
	return out
}
