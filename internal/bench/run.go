package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/portier/portier/client"
	pb "github.com/portier/portier/wire/portierv1"
)

// AdminFunc sends one admin request to the broker listening on socket and
// returns its answer (the portier command's admin client).
type AdminFunc func(socket string, req *pb.AdminRequest) (*pb.AdminResponse, error)

// Options are what Run needs besides the configuration.
type Options struct {
	// Exe is the portier binary the bench runs for every process it starts
	// (see the package documentation). Empty: the running executable.
	Exe string
	// Admin asks the bench's broker for its status and metrics.
	Admin AdminFunc
	// Progress receives a line per measured phase; nil discards them.
	Progress io.Writer
}

// env is the set of processes a run measures.
type env struct {
	ctx      context.Context
	cfg      Config
	exe      string
	admin    AdminFunc
	dir      string // private temporary directory, removed at the end
	runDir   string // broker socket, backend endpoints, state, logs
	svcDir   string
	sock     string
	progress io.Writer

	broker     *child
	brokerPID  int
	backendPID int    // the "echo" backend
	pipe       string // its backend_pipe
	proxy      *child
	proxySock  string
}

// Run sets up a private broker, backend and proxy, measures every phase cfg
// asks for, stops everything it started and returns the report. SIGINT,
// SIGTERM, SIGHUP, ctx's end and a stdout or stderr nobody reads any more
// end the run through the same cleanup.
func Run(ctx context.Context, cfg Config, opts Options) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkPlatform(); err != nil {
		return nil, err
	}
	sctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	ctx, cancel := context.WithCancel(sctx)
	defer cancel()
	defer watchBrokenOutput(cancel)()

	began := time.Now()
	exe := opts.Exe
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	if opts.Admin == nil {
		return nil, fmt.Errorf("bench: no admin client")
	}
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	nofile, err := raiseNoFile()
	if err != nil {
		return nil, fmt.Errorf("raise RLIMIT_NOFILE: %w", err)
	}
	if need := cfg.RSSConns + 512; cfg.RSSConns > 0 && nofile < uint64(need) {
		return nil, fmt.Errorf("RLIMIT_NOFILE hard limit %d is below the %d descriptors the broker needs for --rss-conns %d; lower --rss-conns or raise the limit", nofile, need, cfg.RSSConns)
	}
	dir, err := os.MkdirTemp("", "portier-bench-")
	if err != nil {
		return nil, err
	}
	e := &env{ctx: ctx, cfg: cfg, exe: exe, admin: opts.Admin, dir: dir, progress: progress,
		runDir: filepath.Join(dir, "run"), svcDir: filepath.Join(dir, "services")}
	defer e.close()
	e.sock = filepath.Join(e.runDir, "broker.sock")
	e.proxySock = filepath.Join(e.runDir, "proxy.sock")
	if err := e.setup(); err != nil {
		return nil, err
	}
	rep := &Report{Config: cfg, Machine: readMachine(), StartedAt: began.UTC().Format(time.RFC3339)}
	rep.Machine.NoFile = nofile
	if rep.RSS.IdleStart, err = readProcMem(e.brokerPID); err != nil {
		return nil, err
	}
	if err := e.measure(rep); err != nil {
		return nil, err
	}
	rep.DurationS = time.Since(began).Seconds()
	rep.Summarize()
	return rep, nil
}

// measure runs the load phases round by round, then the memory phase.
func (e *env) measure(rep *Report) error {
	cfg := e.cfg
	strategies := []string{stratDirect, stratHandoff, stratReconnect, stratFastpath, stratProxy}
	if cfg.Early {
		strategies = append(strategies, stratHandoffEarly, stratReconnectEarly)
	}
	// One unrecorded pass over every strategy first: the broker, backend
	// and proxy grow their heaps, thread pools and buffers on their first
	// load, and round 1 should not pay for that alone.
	e.logf("warm-up pass (not recorded)")
	for _, s := range strategies {
		if _, err := e.rttPhase(-1, s, highConc, max(cfg.Warmup, highConc)); err != nil {
			return err
		}
		if streamed(s) {
			if _, err := e.streamPhase(-1, s, min(cfg.Stream, 200*time.Millisecond)); err != nil {
				return err
			}
		}
	}
	for round := range cfg.Rounds {
		order := append(append([]string(nil), strategies[round%len(strategies):]...), strategies[:round%len(strategies)]...)
		e.logf("round %d/%d: %s", round+1, cfg.Rounds, strings.Join(order, ", "))
		for _, s := range order {
			for _, conc := range levels(s) {
				p, err := e.rttPhase(round, s, conc, cfg.conns(conc))
				if err != nil {
					return err
				}
				rep.Raw.RTT = append(rep.Raw.RTT, p)
			}
			if streamed(s) {
				p, err := e.streamPhase(round, s, cfg.Stream)
				if err != nil {
					return err
				}
				rep.Raw.Stream = append(rep.Raw.Stream, p)
			}
		}
		for i := range cfg.ColdSamples {
			cs, err := e.coldSample(round, i)
			if err != nil {
				return err
			}
			rep.Raw.Cold = append(rep.Raw.Cold, cs)
		}
		if cfg.Herd > 0 {
			h, err := e.herdSample(round)
			if err != nil {
				return err
			}
			rep.Herd = append(rep.Herd, h)
		}
	}
	var err error
	if rep.RSS.IdleAfterLoad, err = readProcMem(e.brokerPID); err != nil {
		return err
	}
	if rep.BrokerCounters, err = e.counters("portier_hellos_total", "portier_handoffs_total", "portier_backend_spawns_total"); err != nil {
		return err
	}
	if cfg.RSSConns > 0 {
		if rep.Parked, err = e.rssPending(&rep.RSS); err != nil {
			return err
		}
	}
	return nil
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.progress, "bench: "+format+"\n", args...)
}

// Service names of the definitions the bench writes.
const (
	svcEcho  = "echo"
	svcStall = "stall"
)

func coldService(round, i int) string { return fmt.Sprintf("cold-%d-%d", round, i) }
func herdService(round int) string    { return fmt.Sprintf("herd-%d", round) }

// setup writes the service definitions, starts the broker, the echo backend
// (through a first Dial) and the proxy.
func (e *env) setup() error {
	for _, d := range []string{e.runDir, e.svcDir} {
		if err := makePrivateDir(d); err != nil {
			return err
		}
	}
	echoDef := func(name string) string {
		def := fmt.Sprintf("name = %q\nversion = \"1.0.0\"\ncommand = [%s, %q]\nidle_timeout = \"0\"\n",
			name, strconv.Quote(e.exe), cmdEcho)
		if n := e.cfg.BackendProcs; n > 0 {
			def += fmt.Sprintf("env = { GOMAXPROCS = \"%d\" }\n", n)
		}
		return def
	}
	defs := map[string]string{
		svcEcho: echoDef(svcEcho),
		// Never registers: Hellos for it wait in the broker (the memory phase).
		svcStall: fmt.Sprintf("name = %q\nversion = \"1.0.0\"\ncommand = [%s, %q]\nidle_timeout = \"0\"\nstart_timeout = \"5m\"\n",
			svcStall, strconv.Quote(e.exe), StallCommand),
	}
	// One never-started service per cold-start measurement, so each one
	// really starts a process.
	for r := range e.cfg.Rounds {
		for i := range e.cfg.ColdSamples {
			defs[coldService(r, i)] = echoDef(coldService(r, i))
		}
		defs[herdService(r)] = echoDef(herdService(r))
	}
	for name, def := range defs {
		if err := os.WriteFile(filepath.Join(e.svcDir, name+".toml"), []byte(def), 0o600); err != nil {
			return err
		}
	}

	var err error
	serveArgs := []string{cmdServe, "--socket", e.sock, "--services", e.svcDir, "--log-level", "warn"}
	if n := e.cfg.ServeProcs; n > 0 {
		serveArgs = append(serveArgs, "--procs", strconv.Itoa(n))
	}
	e.broker, err = startChild(e.ctx, "broker", e.exe, serveArgs...)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(startupTimeout)
	var st *pb.Status
	for {
		if st, err = e.status(); err == nil {
			break
		}
		select {
		case <-e.broker.done:
			return fmt.Errorf("broker exited: %v%s", e.broker.err, e.broker.stderr.suffix())
		case <-e.ctx.Done():
			return e.ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("broker did not answer on %s within %s%s", e.sock, startupTimeout, e.broker.stderr.suffix())
		}
	}
	e.brokerPID = int(st.GetBrokerPid())
	if e.brokerPID != e.broker.pid() {
		return fmt.Errorf("broker pid %d, but the process started is %d", e.brokerPID, e.broker.pid())
	}

	// The first Dial starts the echo backend and tells its backend_pipe.
	dctx, cancel := context.WithTimeout(e.ctx, startupTimeout)
	c, err := client.Dial(dctx, svcEcho, client.Socket(e.sock))
	cancel()
	if err != nil {
		return fmt.Errorf("first connection to the echo backend: %w%s", err, e.broker.stderr.suffix())
	}
	e.pipe = c.BackendPipe()
	c.Close()
	if e.backendPID, err = e.backendPIDOf(svcEcho); err != nil {
		return err
	}

	e.proxy, err = startChild(e.ctx, "proxy", e.exe, ProxyCommand, "--listen", e.proxySock, "--target", e.pipe)
	if err != nil {
		return err
	}
	return e.proxy.expect("ready", startupTimeout)
}

// status asks the broker for its status.
func (e *env) status() (*pb.Status, error) {
	resp, err := e.admin(e.sock, &pb.AdminRequest{Verb: &pb.AdminRequest_Status{Status: &pb.StatusRequest{}}})
	if err != nil {
		return nil, err
	}
	return resp.GetStatus(), nil
}

// backendPIDOf is the pid of service's backend as the broker reports it.
func (e *env) backendPIDOf(service string) (int, error) {
	st, err := e.status()
	if err != nil {
		return 0, err
	}
	for _, b := range st.GetBackends() {
		if b.GetServiceName() == service {
			return int(b.GetPid()), nil
		}
	}
	return 0, fmt.Errorf("the broker reports no backend for %s", service)
}

// stopBackend stops service's backend so it costs nothing in later phases.
func (e *env) stopBackend(service string) {
	if pid, err := e.backendPIDOf(service); err == nil {
		stopProcess(pid, 2*time.Second)
	}
}

// close stops everything the run started and removes its directory.
func (e *env) close() {
	if e.proxy != nil {
		e.proxy.terminate(2 * time.Second)
	}
	// The broker's backends run in their own process groups and outlive a
	// broker that exits (by design); their environment names this run's
	// private socket, which identifies them.
	for _, pid := range ProcsWithEnv("PORTIER_BROKER=" + e.sock) {
		stopProcess(pid, 2*time.Second)
	}
	if e.broker != nil {
		e.broker.terminate(10 * time.Second)
	}
	for _, pid := range ProcsWithEnv("PORTIER_BROKER=" + e.sock) {
		stopProcess(pid, time.Second)
	}
	os.RemoveAll(e.dir)
}

// counters reads the broker's metrics and returns the samples of the named
// metrics, keyed by name and labels as the text format prints them.
func (e *env) counters(names ...string) (map[string]float64, error) {
	resp, err := e.admin(e.sock, &pb.AdminRequest{Verb: &pb.AdminRequest_Metrics{Metrics: &pb.MetricsRequest{}}})
	if err != nil {
		return nil, err
	}
	return parseCounters(resp.GetMetricsText(), names...)
}

// parseCounters returns the samples of the named metrics in a Prometheus
// text exposition, keyed by name and labels as the text prints them.
func parseCounters(text string, names ...string) (map[string]float64, error) {
	out := map[string]float64{}
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		key := l[:i]
		name, _, _ := strings.Cut(key, "{")
		if !slices.Contains(names, name) {
			continue
		}
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", l, err)
		}
		out[key] = v
	}
	return out, nil
}

// spawns reads portier_backend_spawns_total{service=svc} from the broker's
// metrics (every result: a failed start is a start too).
func (e *env) spawns(svc string) (int, error) {
	c, err := e.counters("portier_backend_spawns_total")
	if err != nil {
		return 0, err
	}
	total := 0.0
	for k, v := range c {
		if strings.Contains(k, `service="`+svc+`"`) {
			total += v
		}
	}
	return int(math.Round(total)), nil
}

// snapshot reads the counters of the measured processes (in the order of
// procNames) and the machine's CPU time.
func (e *env) snapshot(clientPID int) (snapshot, error) {
	var s snapshot
	var err error
	if s.busy, s.steal, err = readSystemCPU(); err != nil {
		return s, err
	}
	for i, pid := range []int{clientPID, e.brokerPID, e.backendPID, e.proxy.pid()} {
		c, err := readProcSample(pid)
		if err != nil {
			return s, fmt.Errorf("counters of the %s (pid %d): %w", procNames[i], pid, err)
		}
		s.procs[i] = c
	}
	s.at = time.Now()
	return s, nil
}

// clientRun is one client process's measured phase.
type clientRun struct {
	line      string // its JSON result
	cpu       CPUSplit
	counts    map[string]ProcCounts // by process, over the phase
	fallbacks uint64                // handoff fallbacks the broker counted during the phase
	handoffs  uint64
}

// runClient runs one load-generator process through the warm/go/done/report
// exchange, reading the counters at the edges of the measured phase.
func (e *env) runClient(name string, args ...string) (*clientRun, error) {
	c, err := startChild(e.ctx, name, e.exe, append([]string{ClientCommand, "--socket", e.sock}, args...)...)
	if err != nil {
		return nil, err
	}
	defer c.kill()
	if err := c.expect(lineWarm, phaseTimeout); err != nil {
		return nil, err
	}
	st0, err := e.status()
	if err != nil {
		return nil, err
	}
	before, err := e.snapshot(c.pid())
	if err != nil {
		return nil, err
	}
	if err := c.send(lineGo); err != nil {
		return nil, err
	}
	if err := c.expect(lineDone, phaseTimeout); err != nil {
		return nil, err
	}
	after, err := e.snapshot(c.pid())
	if err != nil {
		return nil, err
	}
	st1, err := e.status()
	if err != nil {
		return nil, err
	}
	if err := c.send(lineReport); err != nil {
		return nil, err
	}
	line, err := c.readLine(phaseTimeout)
	if err != nil {
		return nil, err
	}
	if err := c.wait(10 * time.Second); err != nil {
		return nil, err
	}
	return &clientRun{line: line, cpu: cpuDelta(before, after, runtime.NumCPU()), counts: countsDelta(before, after),
		fallbacks: st1.GetFallbacks() - st0.GetFallbacks(), handoffs: st1.GetHandoffs() - st0.GetHandoffs()}, nil
}

// strategyArgs are the client flags that select strategy s.
func (e *env) strategyArgs(s string) []string {
	args := []string{"--strategy", s}
	switch s {
	case stratDirect:
		args = append(args, "--pipe", e.pipe)
	case stratProxy:
		args = append(args, "--pipe", e.proxySock)
	}
	return args
}
