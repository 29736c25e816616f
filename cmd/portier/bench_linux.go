package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/portier/portier/client"
	"github.com/portier/portier/internal/ipc"
	pb "github.com/portier/portier/wire/portierv1"
)

func init() {
	register(command{name: "bench", run: benchCmd,
		summary: "measure direct, handoff, reconnect and proxy: latency, conns/s, CPU, MB/s, cold start, RSS"})
}

// benchConfig is one bench run's configuration; it is printed with the
// results so a reader knows what was measured.
type benchConfig struct {
	Rounds      int           `json:"rounds"`
	ConnsC1     int           `json:"conns_c1"`
	ConnsC16    int           `json:"conns_c16"`
	Warmup      int           `json:"warmup"`
	Stream      time.Duration `json:"stream_ns"`
	ColdSamples int           `json:"cold_samples_per_round"`
	Herd        int           `json:"herd_hellos"`
	RSSConns    int           `json:"rss_conns"`
	RSSProcs    int           `json:"rss_client_processes"`
	Early       bool          `json:"early_rows"`
	Quick       bool          `json:"quick"`
}

// highConc is the concurrency of the "c16" rows; the ratio names say 16.
const highConc = 16

// Timeouts of the bench's own waits. They only catch a stuck process; no
// measured figure depends on them.
const (
	phaseTimeout   = 3 * time.Minute
	startupTimeout = 20 * time.Second
)

func benchCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bench", stderr)
	cfg := benchConfig{}
	fs.IntVar(&cfg.Rounds, "rounds", 5, "rounds; each runs every strategy, in an order rotated by one per round")
	fs.IntVar(&cfg.ConnsC1, "conns", 5000, "measured connections per strategy at concurrency 1, per round")
	fs.IntVar(&cfg.ConnsC16, "conns-c16", 10000, "measured connections per strategy at concurrency 16, per round")
	fs.IntVar(&cfg.Warmup, "warmup", 200, "warm-up connections before each measured phase")
	fs.DurationVar(&cfg.Stream, "stream", 2*time.Second, "how long each streaming phase writes")
	fs.IntVar(&cfg.ColdSamples, "cold", 2, "cold starts measured per round")
	fs.IntVar(&cfg.Herd, "herd", 64, "concurrent Hellos to a stopped service, once per round")
	fs.IntVar(&cfg.RSSConns, "rss-conns", 10000, "pending connections for the broker RSS measurement (0: skip)")
	fs.IntVar(&cfg.RSSProcs, "rss-procs", 4, "client processes holding those connections")
	noEarly := fs.Bool("no-early", false, "skip the handoff+early and reconnect+early rows")
	fs.BoolVar(&cfg.Quick, "quick", false, "a short run (under a minute): 3 rounds, fewer connections, 0.5 s streams")
	asJSON := fs.Bool("json", false, "print one JSON object instead of tables")
	asMarkdown := fs.Bool("markdown", false, "print markdown tables (for docs/PERFORMANCE.md)")
	quiet := fs.Bool("q", false, "no progress lines on stderr")
	from := fs.String("from", "", "print the report saved by an earlier --json run instead of measuring")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: portier bench [flags]\n\nStarts a broker, an echo backend, a copying proxy and client processes in a\nprivate temporary directory, measures, and removes everything it started.\n\nFlags:")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if cfg.Quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quick := map[string]func(){
			"rounds":    func() { cfg.Rounds = 3 },
			"conns":     func() { cfg.ConnsC1 = 600 },
			"conns-c16": func() { cfg.ConnsC16 = 1500 },
			"warmup":    func() { cfg.Warmup = 100 },
			"stream":    func() { cfg.Stream = 500 * time.Millisecond },
			"cold":      func() { cfg.ColdSamples = 1 },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	cfg.Early = !*noEarly
	if cfg.Rounds < 1 || cfg.ConnsC1 < 1 || cfg.ConnsC16 < 1 || cfg.Warmup < 0 || cfg.Stream <= 0 ||
		cfg.ColdSamples < 0 || cfg.Herd < 0 || cfg.RSSConns < 0 || cfg.RSSProcs < 1 {
		fmt.Fprintln(stderr, "portier bench: counts must be positive (cold, herd and rss-conns may be 0)")
		return exitUsage
	}
	if *asJSON && *asMarkdown {
		fmt.Fprintln(stderr, "portier bench: --json and --markdown exclude each other")
		return exitUsage
	}
	var rep *benchReport
	if *from != "" {
		b, err := os.ReadFile(*from)
		if err == nil {
			rep = new(benchReport)
			err = json.Unmarshal(b, rep)
		}
		if err != nil {
			fmt.Fprintln(stderr, "portier bench:", err)
			return exitFailure
		}
		// Recompute the summaries from the raw figures, so the rendering
		// matches this binary's definitions.
		rep.RTT, rep.Stream, rep.Cold, rep.Targets, rep.Warnings = nil, nil, coldSummary{}, nil, nil
		rep.summarize()
	} else {
		// Any of these ends the run through its cleanup, which stops every
		// process it started.
		sctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
		defer stop()
		ctx, cancel := context.WithCancel(sctx)
		defer cancel()
		defer watchBrokenOutput(cancel)()
		progress := stderr
		if *quiet {
			progress = io.Discard
		}
		var err error
		if rep, err = runBench(ctx, cfg, progress); err != nil {
			fmt.Fprintln(stderr, "portier bench:", err)
			return exitFailure
		}
		rep.Command = strings.TrimSpace("portier bench " + strings.Join(args, " "))
	}
	switch {
	case *asJSON:
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(stderr, "portier bench:", err)
			return exitFailure
		}
	case *asMarkdown:
		rep.writeMarkdown(stdout)
	default:
		rep.writeText(stdout)
	}
	return exitOK
}

// benchEnv is the set of processes a run measures.
type benchEnv struct {
	ctx      context.Context
	cfg      benchConfig
	exe      string
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

// runBench sets up, measures every phase and tears down.
func runBench(ctx context.Context, cfg benchConfig, progress io.Writer) (*benchReport, error) {
	began := time.Now()
	exe, err := os.Executable()
	if err != nil {
		return nil, err
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
	e := &benchEnv{ctx: ctx, cfg: cfg, exe: exe, dir: dir, progress: progress,
		runDir: filepath.Join(dir, "run"), svcDir: filepath.Join(dir, "services")}
	defer e.close()
	e.sock = filepath.Join(e.runDir, "broker.sock")
	e.proxySock = filepath.Join(e.runDir, "proxy.sock")
	if err := e.setup(); err != nil {
		return nil, err
	}
	rep := &benchReport{Config: cfg, Machine: readMachine(), StartedAt: began.UTC().Format(time.RFC3339)}
	rep.Machine.NoFile = nofile
	if rep.RSS.IdleStart, err = readProcMem(e.brokerPID); err != nil {
		return nil, err
	}

	strategies := []string{stratDirect, stratHandoff, stratReconnect, stratProxy}
	if cfg.Early {
		strategies = append(strategies, stratHandoffEarly, stratReconnectEarly)
	}
	// One unrecorded pass over every strategy first: the broker, backend
	// and proxy grow their heaps, thread pools and buffers on their first
	// load, and round 1 should not pay for that alone.
	e.logf("warm-up pass (not recorded)")
	for _, s := range strategies {
		if _, err := e.rttPhase(-1, s, highConc, max(cfg.Warmup, highConc)); err != nil {
			return nil, err
		}
		if !strings.HasSuffix(s, "+early") {
			if _, err := e.streamPhase(-1, s, min(cfg.Stream, 200*time.Millisecond)); err != nil {
				return nil, err
			}
		}
	}
	for round := range cfg.Rounds {
		order := append(append([]string(nil), strategies[round%len(strategies):]...), strategies[:round%len(strategies)]...)
		e.logf("round %d/%d: %s", round+1, cfg.Rounds, strings.Join(order, ", "))
		for _, s := range order {
			for _, conc := range []int{1, highConc} {
				n := cfg.ConnsC1
				if conc > 1 {
					n = cfg.ConnsC16
				}
				p, err := e.rttPhase(round, s, conc, n)
				if err != nil {
					return nil, err
				}
				rep.Raw.RTT = append(rep.Raw.RTT, p)
			}
			if !strings.HasSuffix(s, "+early") {
				p, err := e.streamPhase(round, s, cfg.Stream)
				if err != nil {
					return nil, err
				}
				rep.Raw.Stream = append(rep.Raw.Stream, p)
			}
		}
		for i := range cfg.ColdSamples {
			cs, err := e.coldSample(round, i)
			if err != nil {
				return nil, err
			}
			rep.Raw.Cold = append(rep.Raw.Cold, cs)
		}
		if cfg.Herd > 0 {
			h, err := e.herdSample(round)
			if err != nil {
				return nil, err
			}
			rep.Herd = append(rep.Herd, h)
		}
	}
	if rep.RSS.IdleAfterLoad, err = readProcMem(e.brokerPID); err != nil {
		return nil, err
	}
	if rep.BrokerCounters, err = e.counters("portier_hellos_total", "portier_handoffs_total", "portier_backend_spawns_total"); err != nil {
		return nil, err
	}
	if cfg.RSSConns > 0 {
		if err := e.rssPending(&rep.RSS); err != nil {
			return nil, err
		}
	}
	rep.DurationS = time.Since(began).Seconds()
	rep.summarize()
	return rep, nil
}

func (e *benchEnv) logf(format string, args ...any) {
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
func (e *benchEnv) setup() error {
	for _, d := range []string{e.runDir, e.svcDir} {
		if err := ipc.EnsurePrivateDir(d); err != nil {
			return err
		}
	}
	echoDef := func(name string) string {
		return fmt.Sprintf("name = %q\nversion = \"1.0.0\"\ncommand = [%s, \"__echo-backend\"]\nidle_timeout = \"0\"\n",
			name, strconv.Quote(e.exe))
	}
	defs := map[string]string{
		svcEcho: echoDef(svcEcho),
		// Never registers: Hellos for it wait in the broker (the RSS phase).
		svcStall: fmt.Sprintf("name = %q\nversion = \"1.0.0\"\ncommand = [%s, \"__bench-stall\"]\nidle_timeout = \"0\"\nstart_timeout = \"5m\"\n",
			svcStall, strconv.Quote(e.exe)),
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
	e.broker, err = startChild(e.ctx, "broker", e.exe, "serve", "--socket", e.sock, "--services", e.svcDir, "--log-level", "warn")
	if err != nil {
		return err
	}
	deadline := time.Now().Add(startupTimeout)
	var st *pb.Status
	for {
		if resp, err := adminCall(e.sock, &pb.AdminRequest{Verb: &pb.AdminRequest_Status{Status: &pb.StatusRequest{}}}); err == nil {
			st = resp.GetStatus()
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

	e.proxy, err = startChild(e.ctx, "proxy", e.exe, "__bench-proxy", "--listen", e.proxySock, "--target", e.pipe)
	if err != nil {
		return err
	}
	return e.proxy.expect("ready", startupTimeout)
}

// status asks the broker for its status.
func (e *benchEnv) status() (*pb.Status, error) {
	resp, err := adminCall(e.sock, &pb.AdminRequest{Verb: &pb.AdminRequest_Status{Status: &pb.StatusRequest{}}})
	if err != nil {
		return nil, err
	}
	return resp.GetStatus(), nil
}

// backendPIDOf is the pid of service's backend as the broker reports it.
func (e *benchEnv) backendPIDOf(service string) (int, error) {
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
func (e *benchEnv) stopBackend(service string) {
	if pid, err := e.backendPIDOf(service); err == nil {
		stopProcess(pid, 2*time.Second)
	}
}

// close stops everything the run started and removes its directory.
func (e *benchEnv) close() {
	if e.proxy != nil {
		e.proxy.terminate(2 * time.Second)
	}
	// The broker's backends run in their own process groups and outlive a
	// broker that exits (by design); their environment names this run's
	// private socket, which identifies them.
	for _, pid := range procsWithEnv("PORTIER_BROKER=" + e.sock) {
		stopProcess(pid, 2*time.Second)
	}
	if e.broker != nil {
		e.broker.terminate(10 * time.Second)
	}
	for _, pid := range procsWithEnv("PORTIER_BROKER=" + e.sock) {
		stopProcess(pid, time.Second)
	}
	os.RemoveAll(e.dir)
}

// cpuSplit is the CPU time of one measured phase by process, in ns.
type cpuSplit struct {
	Client  int64 `json:"client_ns"`
	Broker  int64 `json:"broker_ns"`
	Backend int64 `json:"backend_ns"`
	Proxy   int64 `json:"proxy_ns"`
	// TicksTotal is the same total from utime+stime (10 ms ticks).
	TicksTotal int64 `json:"ticks_total_ns"`
	// WallNS is the time between the two readings.
	WallNS int64 `json:"wall_ns"`
	// OtherPct is the CPU time the rest of the machine (processes the
	// bench did not start) used meanwhile, in percent of all CPUs, from
	// /proc/stat: a phase with a high figure was disturbed. StealPct is the
	// hypervisor's steal time likewise.
	OtherPct float64 `json:"other_cpu_pct"`
	StealPct float64 `json:"steal_pct"`
}

func (c cpuSplit) total() int64 { return c.Client + c.Broker + c.Backend + c.Proxy }

// cpuSnap is one reading of the measured processes' and the machine's CPU
// counters.
type cpuSnap struct {
	procs       [4]procCPU
	busy, steal int64 // machine-wide, ns
	at          time.Time
}

// cpuSnapshot reads the CPU counters of the measured processes.
func (e *benchEnv) cpuSnapshot(clientPID int) (cpuSnap, error) {
	var s cpuSnap
	var err error
	if s.busy, s.steal, err = readSystemCPU(); err != nil {
		return s, err
	}
	for i, pid := range []int{clientPID, e.brokerPID, e.backendPID, e.proxy.pid()} {
		c, err := readProcCPU(pid)
		if err != nil {
			return s, fmt.Errorf("CPU of pid %d: %w", pid, err)
		}
		s.procs[i] = c
	}
	s.at = time.Now()
	return s, nil
}

func cpuDelta(a, b cpuSnap) cpuSplit {
	d := cpuSplit{
		Client:  b.procs[0].schedNS - a.procs[0].schedNS,
		Broker:  b.procs[1].schedNS - a.procs[1].schedNS,
		Backend: b.procs[2].schedNS - a.procs[2].schedNS,
		Proxy:   b.procs[3].schedNS - a.procs[3].schedNS,
		WallNS:  int64(b.at.Sub(a.at)),
	}
	for i := range a.procs {
		d.TicksTotal += b.procs[i].tickNS - a.procs[i].tickNS
	}
	if all := float64(d.WallNS) * float64(runtime.NumCPU()); all > 0 {
		d.OtherPct = max(0, float64(b.busy-a.busy-d.total())) / all * 100
		d.StealPct = float64(b.steal-a.steal) / all * 100
	}
	return d
}

// clientRun is one client process's measured phase.
type clientRun struct {
	line      string // its JSON result
	cpu       cpuSplit
	fallbacks uint64 // handoff fallbacks the broker counted during the phase
	handoffs  uint64
}

// runClient runs one __bench-client process through the warm/go/done/report
// exchange, reading the CPU counters at the edges of the measured phase.
func (e *benchEnv) runClient(name string, args ...string) (*clientRun, error) {
	c, err := startChild(e.ctx, name, e.exe, append([]string{"__bench-client", "--socket", e.sock}, args...)...)
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
	before, err := e.cpuSnapshot(c.pid())
	if err != nil {
		return nil, err
	}
	if err := c.send(lineGo); err != nil {
		return nil, err
	}
	if err := c.expect(lineDone, phaseTimeout); err != nil {
		return nil, err
	}
	after, err := e.cpuSnapshot(c.pid())
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
	return &clientRun{line: line, cpu: cpuDelta(before, after),
		fallbacks: st1.GetFallbacks() - st0.GetFallbacks(), handoffs: st1.GetHandoffs() - st0.GetHandoffs()}, nil
}

// strategyArgs are the client flags that select strategy s.
func (e *benchEnv) strategyArgs(s string) []string {
	args := []string{"--strategy", s}
	switch s {
	case stratDirect:
		args = append(args, "--pipe", e.pipe)
	case stratProxy:
		args = append(args, "--pipe", e.proxySock)
	}
	return args
}

// rttPhase measures connection setup plus one 64-byte round trip.
type rttPhase struct {
	Round        int       `json:"round"`
	Strategy     string    `json:"strategy"`
	Concurrency  int       `json:"concurrency"`
	Result       rttResult `json:"result"`
	ConnsPerSec  float64   `json:"conns_per_s"`
	CPU          cpuSplit  `json:"cpu"`
	CPUPerConnNS float64   `json:"cpu_per_conn_ns"`
	Handoffs     uint64    `json:"broker_handoffs"`
	Fallbacks    uint64    `json:"broker_fallbacks"`
}

func (e *benchEnv) rttPhase(round int, s string, conc, n int) (rttPhase, error) {
	p := rttPhase{Round: round, Strategy: s, Concurrency: conc}
	args := append(e.strategyArgs(s), "--mode", "rtt", "--service", svcEcho,
		"--conns", strconv.Itoa(n), "--concurrency", strconv.Itoa(conc), "--warmup", strconv.Itoa(e.cfg.Warmup))
	run, err := e.runClient(fmt.Sprintf("client %s c=%d", s, conc), args...)
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal([]byte(run.line), &p.Result); err != nil {
		return p, fmt.Errorf("client %s c=%d: bad result %q: %w", s, conc, run.line, err)
	}
	if p.Result.N == 0 {
		return p, fmt.Errorf("client %s c=%d: every connection failed, first: %s", s, conc, p.Result.FirstError)
	}
	p.CPU, p.Handoffs, p.Fallbacks = run.cpu, run.handoffs, run.fallbacks
	p.ConnsPerSec = float64(p.Result.N) / (float64(p.Result.ElapsedNS) / 1e9)
	p.CPUPerConnNS = float64(run.cpu.total()) / float64(p.Result.N)
	e.logf("  %-16s c=%-2d p50 %7.1fµs p99 %7.1fµs %8.0f conns/s %6.1f µs CPU/conn routes %v",
		s, conc, float64(p.Result.P50NS)/1e3, float64(p.Result.P99NS)/1e3, p.ConnsPerSec, p.CPUPerConnNS/1e3, p.Result.Routes)
	if p.Result.Errors > 0 {
		e.logf("  %s c=%d: %d connections failed, first: %s", s, conc, p.Result.Errors, p.Result.FirstError)
	}
	return p, nil
}

// streamPhase measures throughput on one connection.
type streamPhase struct {
	Round    int          `json:"round"`
	Strategy string       `json:"strategy"`
	Result   streamResult `json:"result"`
	MBps     float64      `json:"mb_per_s"`
	CPU      cpuSplit     `json:"cpu"`
}

func (e *benchEnv) streamPhase(round int, s string, d time.Duration) (streamPhase, error) {
	p := streamPhase{Round: round, Strategy: s}
	args := append(e.strategyArgs(s), "--mode", "stream", "--service", svcEcho,
		"--duration", d.String(), "--warmup", "20")
	run, err := e.runClient("stream client "+s, args...)
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal([]byte(run.line), &p.Result); err != nil {
		return p, fmt.Errorf("stream client %s: bad result %q: %w", s, run.line, err)
	}
	p.CPU = run.cpu
	p.MBps = float64(p.Result.Written) / 1e6 / (float64(p.Result.ElapsedNS) / 1e9)
	e.logf("  %-16s stream %8.0f MB/s (route %s)", s, p.MBps, p.Result.Route)
	return p, nil
}

// coldSample is one cold start: a Hello for a service whose backend is not
// running, against the same backend binary started standalone.
type coldSample struct {
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

func (e *benchEnv) coldSample(round, i int) (coldSample, error) {
	svc := coldService(round, i)
	cs := coldSample{Round: round, Service: svc}
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
	var r rttResult
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
func (e *benchEnv) execToListening(name string) (listen, echo int64, err error) {
	path := filepath.Join(e.runDir, name)
	cmd := exec.Command(e.exe, "__echo-backend", "--listen", path)
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
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
	var msg, back [benchPayload]byte
	copy(msg[:], "cold")
	if _, err := c.Write(msg[:]); err != nil {
		return 0, 0, err
	}
	if _, err := io.ReadFull(c, back[:]); err != nil {
		return 0, 0, err
	}
	return listen, int64(time.Since(t0)), nil
}

// herdSample is one burst of concurrent Hellos to a stopped service.
type herdSample struct {
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

func (e *benchEnv) herdSample(round int) (herdSample, error) {
	svc := herdService(round)
	h := herdSample{Round: round, Service: svc, Hellos: e.cfg.Herd}
	run, err := e.runClient("herd client "+svc, "--strategy", stratHandoff, "--mode", "rtt",
		"--service", svc, "--warm-service", svcEcho, "--warmup", "50",
		"--conns", strconv.Itoa(e.cfg.Herd), "--concurrency", strconv.Itoa(e.cfg.Herd))
	if err != nil {
		return h, err
	}
	var r rttResult
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

// counters reads the broker's metrics and returns the samples of the named
// metrics, keyed by name and labels as the text format prints them.
func (e *benchEnv) counters(names ...string) (map[string]float64, error) {
	resp, err := adminCall(e.sock, &pb.AdminRequest{Verb: &pb.AdminRequest_Metrics{Metrics: &pb.MetricsRequest{}}})
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, l := range strings.Split(resp.GetMetricsText(), "\n") {
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
func (e *benchEnv) spawns(svc string) (int, error) {
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

// rssResult is the broker's memory, idle and with many pending connections.
type rssResult struct {
	IdleStart     procMem `json:"idle_start"`
	IdleAfterLoad procMem `json:"idle_after_load"`
	// Pending: RSSConns connections that each sent a Hello for a service
	// whose backend never registers, held open while the broker waits for
	// it; the largest VmRSS of 10 samples 100 ms apart.
	Pending      procMem `json:"pending"`
	PendingConns int     `json:"pending_conns"`
	// AfterRelease: 1 s after those connections closed and the stalled
	// backend was stopped.
	AfterRelease procMem `json:"after_release"`
	Method       string  `json:"method"`
}

// rssPending holds RSSConns Hellos pending in the broker and samples its
// memory.
func (e *benchEnv) rssPending(r *rssResult) error {
	n, procs := e.cfg.RSSConns, e.cfg.RSSProcs
	r.Method = fmt.Sprintf("%d connections from %d client processes each send a Hello (with the handoff capability) for a service whose "+
		"backend never registers (start_timeout 5m); once the broker holds a descriptor for each of them (its descriptor count is at least %d and steady), "+
		"VmRSS from /proc/<broker>/status is sampled 10 times, 100 ms apart, and the largest is reported", n, procs, n)
	base, err := readProcMem(e.brokerPID)
	if err != nil {
		return err
	}
	var holders []*child
	defer func() {
		for _, c := range holders {
			c.kill()
		}
	}()
	for i := range procs {
		k := n / procs
		if i < n%procs {
			k++
		}
		c, err := startChild(e.ctx, fmt.Sprintf("holder %d", i), e.exe, "__bench-client", "--mode", "hold",
			"--socket", e.sock, "--service", svcStall, "--conns", strconv.Itoa(k))
		if err != nil {
			return err
		}
		holders = append(holders, c)
	}
	for _, c := range holders {
		l, err := c.readLine(phaseTimeout)
		if err != nil {
			return err
		}
		if !strings.HasPrefix(l, "held ") {
			return fmt.Errorf("%s said %q", c.name, l)
		}
	}
	// Every Hello has been written; wait until the broker holds a
	// descriptor for each connection and the count has settled.
	deadline := time.Now().Add(30 * time.Second)
	last, stable := -1, 0
	for stable < 5 {
		m, err := readProcMem(e.brokerPID)
		if err != nil {
			return err
		}
		if m.FDs >= n && m.FDs == last {
			stable++
		} else {
			stable = 0
		}
		last = m.FDs
		if time.Now().After(deadline) {
			return fmt.Errorf("the broker holds %d descriptors (%d before), want %d more: not every connection reached it", m.FDs, base.FDs, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for range 10 {
		m, err := readProcMem(e.brokerPID)
		if err != nil {
			return err
		}
		if m.RSSKiB > r.Pending.RSSKiB {
			r.Pending = m
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.PendingConns = n
	e.logf("broker with %d pending Hellos: VmRSS %.1f MiB, %d descriptors, %d threads",
		n, float64(r.Pending.RSSKiB)/1024, r.Pending.FDs, r.Pending.Threads)
	for _, c := range holders {
		if err := c.wait(30 * time.Second); err != nil {
			return err
		}
	}
	holders = nil
	for _, pid := range procsWithEnv("PORTIER_BROKER="+e.sock, "PORTIER_SERVICE="+svcStall) {
		stopProcess(pid, 2*time.Second)
	}
	time.Sleep(time.Second)
	if r.AfterRelease, err = readProcMem(e.brokerPID); err != nil {
		return err
	}
	return nil
}
