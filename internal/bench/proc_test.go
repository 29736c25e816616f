package bench

import (
	"errors"
	"runtime/debug"
	"testing"
	"time"
)

func TestParseSchedstat(t *testing.T) {
	ns, err := parseSchedstat([]byte("123456789 4242 17\n"))
	if err != nil || ns != 123456789 {
		t.Errorf("parseSchedstat = %d, %v; want 123456789", ns, err)
	}
	for _, bad := range []string{"", "x 1 2"} {
		if _, err := parseSchedstat([]byte(bad)); err == nil {
			t.Errorf("parseSchedstat(%q) accepted", bad)
		}
	}
}

// A command name may hold spaces and parentheses; the fields start after
// the last ')'.
const statLine = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 9 0 12345 1000 200 18446744073709551615\n"

func TestParseStat(t *testing.T) {
	f, err := parseStatFields([]byte(statLine))
	if err != nil {
		t.Fatal(err)
	}
	if f[0] != "S" || f[1] != "1" {
		t.Errorf("fields start %q %q, want the state S then ppid 1", f[0], f[1])
	}
	ns, err := statTicksNS(f)
	if want := int64(250+130) * int64(10*time.Millisecond); err != nil || ns != want {
		t.Errorf("statTicksNS = %d, %v; want %d (utime 250 + stime 130 ticks of 10 ms)", ns, err, want)
	}
	if _, err := parseStatFields([]byte("4242 no parenthesis S 1")); err == nil {
		t.Error("a stat line without the command field was accepted")
	}
	if _, err := parseStatFields([]byte("4242 (x) S 1 2 3")); err == nil {
		t.Error("a short stat line was accepted")
	}
}

func TestParseSystemCPU(t *testing.T) {
	busy, steal, err := parseSystemCPU([]byte("cpu  100 2 30 5000 7 4 5 9 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"))
	tick := int64(10 * time.Millisecond)
	if err != nil || busy != (100+2+30+4+5)*tick || steal != 9*tick {
		t.Errorf("parseSystemCPU = %d, %d, %v; want busy %d (user nice system irq softirq), steal %d",
			busy, steal, err, (100+2+30+4+5)*tick, 9*tick)
	}
	if _, _, err := parseSystemCPU([]byte("intr 1 2 3\n")); err == nil {
		t.Error("a /proc/stat without the cpu line first was accepted")
	}
}

func TestParseStatusMem(t *testing.T) {
	m, err := parseStatusMem([]byte("Name:\tportier\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t9\nvoluntary_ctxt_switches:\t5\n"))
	if err != nil || m.RSSKiB != 10240 || m.HWMKiB != 20480 || m.Threads != 9 {
		t.Errorf("parseStatusMem = %+v, %v", m, err)
	}
}

func TestParseStatusCtxt(t *testing.T) {
	status := "Name:\tportier\nvoluntary_ctxt_switches:\t1234\nnonvoluntary_ctxt_switches:\t56\n"
	v, n, err := parseStatusCtxt([]byte(status))
	if err != nil || v != 1234 || n != 56 {
		t.Errorf("parseStatusCtxt = %d, %d, %v; want 1234, 56", v, n, err)
	}
	for _, bad := range []string{"Name:\tx\n", "voluntary_ctxt_switches:\t1\n", "voluntary_ctxt_switches:\tx\nnonvoluntary_ctxt_switches:\t1\n"} {
		if _, _, err := parseStatusCtxt([]byte(bad)); err == nil {
			t.Errorf("parseStatusCtxt(%q) accepted", bad)
		}
	}
}

func TestParseProcIO(t *testing.T) {
	io := "rchar: 6976\nwchar: 10\nsyscr: 17\nsyscw: 4\nread_bytes: 0\nwrite_bytes: 0\ncancelled_write_bytes: 0\n"
	r, w, err := parseProcIO([]byte(io))
	if err != nil || r != 17 || w != 4 {
		t.Errorf("parseProcIO = %d, %d, %v; want 17, 4", r, w, err)
	}
	if _, _, err := parseProcIO([]byte("rchar: 1\nsyscr: 2\n")); err == nil {
		t.Error("an io file without syscw was accepted")
	}
}

func TestProcCountsArithmetic(t *testing.T) {
	a := ProcCounts{VoluntaryCS: 10, NonvoluntaryCS: 2, SysR: 30, SysW: 40}
	b := ProcCounts{VoluntaryCS: 15, NonvoluntaryCS: 3, SysR: 37, SysW: 41}
	if d := b.sub(a); d != (ProcCounts{5, 1, 7, 1}) {
		t.Errorf("sub = %+v", d)
	}
	if s := a.add(b); s != (ProcCounts{25, 5, 67, 81}) {
		t.Errorf("add = %+v", s)
	}
	t0 := time.Unix(1000, 0)
	x := snapshot{at: t0}
	y := snapshot{at: t0.Add(time.Millisecond)}
	x.procs[1].counts, y.procs[1].counts = a, b
	d := countsDelta(x, y)
	if len(d) != 4 || d["broker"] != (ProcCounts{5, 1, 7, 1}) || d["client"] != (ProcCounts{}) {
		t.Errorf("countsDelta = %+v, want the broker's growth under \"broker\"", d)
	}
}

func TestEnvironHas(t *testing.T) {
	env := []byte("HOME=/h\x00PORTIER_BROKER=/tmp/x/broker.sock\x00PORTIER_SERVICE=stall\x00")
	for _, c := range []struct {
		entries []string
		want    bool
	}{
		{[]string{"PORTIER_BROKER=/tmp/x/broker.sock"}, true},
		{[]string{"PORTIER_BROKER=/tmp/x/broker.sock", "PORTIER_SERVICE=stall"}, true},
		{[]string{"PORTIER_BROKER=/tmp/x/broker.sock", "PORTIER_SERVICE=echo"}, false},
		{[]string{"PORTIER_BROKER=/tmp/x"}, false}, // whole entries only
	} {
		if got := environHas(env, c.entries); got != c.want {
			t.Errorf("environHas(%q) = %v, want %v", c.entries, got, c.want)
		}
	}
}

func TestBuildRevision(t *testing.T) {
	set := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	for _, c := range []struct {
		s    []debug.BuildSetting
		want string
	}{
		{set("vcs.revision", "abc", "vcs.modified", "false"), "abc"},
		{set("vcs.modified", "true", "vcs.revision", "abc"), "abc+modified"},
		{set("vcs.modified", "true"), ""},
		{nil, ""},
	} {
		if got := buildRevision(c.s); got != c.want {
			t.Errorf("buildRevision(%v) = %q, want %q", c.s, got, c.want)
		}
	}
}

func TestCPUDelta(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a := snapshot{procs: [4]procSample{{schedNS: 100}, {schedNS: 200}, {schedNS: 300}, {schedNS: 400}}, busy: 1_000, steal: 0, at: t0}
	b := snapshot{procs: [4]procSample{{schedNS: 1_100, tickNS: 10}, {schedNS: 2_200, tickNS: 20}, {schedNS: 3_300, tickNS: 30}, {schedNS: 4_400, tickNS: 40}}, busy: 1_000 + 10_000 + 4_000, steal: 400,
		at: t0.Add(10 * time.Microsecond)}
	d := cpuDelta(a, b, 2)
	if d.Client != 1000 || d.Broker != 2000 || d.Backend != 3000 || d.Proxy != 4000 || d.total() != 10_000 ||
		d.TicksTotal != 100 || d.WallNS != 10_000 {
		t.Errorf("cpuDelta = %+v", d)
	}
	// 4,000 ns of busy time beyond the measured processes' 10,000, over
	// 2 CPUs × 10 µs: 20 %; steal 400 of 20,000: 2 %.
	if d.OtherPct != 20 || d.StealPct != 2 {
		t.Errorf("other %v %%, steal %v %%; want 20 and 2", d.OtherPct, d.StealPct)
	}
	// Busy time below the processes' own (counter skew) is no load, not a
	// negative one.
	b.busy = a.busy
	if d := cpuDelta(a, b, 2); d.OtherPct != 0 {
		t.Errorf("other %v %% with no machine busy time, want 0", d.OtherPct)
	}
}

func TestParseCounters(t *testing.T) {
	text := `# HELP portier_hellos_total Hellos.
# TYPE portier_hellos_total counter
portier_hellos_total{outcome="handoff",reason=""} 593
portier_hellos_total{outcome="reconnect",reason="client_unsupported"} 3.83e+02
portier_other_total 7
portier_backend_spawns_total{result="started",service="herd-0"} 1
`
	c, err := parseCounters(text, "portier_hellos_total", "portier_backend_spawns_total")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		`portier_hellos_total{outcome="handoff",reason=""}`:                     593,
		`portier_hellos_total{outcome="reconnect",reason="client_unsupported"}`: 383,
		`portier_backend_spawns_total{result="started",service="herd-0"}`:       1,
	}
	if len(c) != len(want) {
		t.Errorf("parseCounters = %v, want %v", c, want)
	}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("%s = %v, want %v", k, c[k], v)
		}
	}
	if _, err := parseCounters("portier_hellos_total{} many\n", "portier_hellos_total"); err == nil {
		t.Error("a sample that is not a number was accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("the default configuration: %v", err)
	}
	for name, mutate := range map[string]func(*Config){
		"rounds 0":     func(c *Config) { c.Rounds = 0 },
		"conns 0":      func(c *Config) { c.ConnsC1 = 0 },
		"conns-c16 0":  func(c *Config) { c.ConnsC16 = 0 },
		"warmup -1":    func(c *Config) { c.Warmup = -1 },
		"stream 0":     func(c *Config) { c.Stream = 0 },
		"cold -1":      func(c *Config) { c.ColdSamples = -1 },
		"herd -1":      func(c *Config) { c.Herd = -1 },
		"rss-conns -1": func(c *Config) { c.RSSConns = -1 },
		"rss-procs 0":  func(c *Config) { c.RSSProcs = 0 },
	} {
		c := DefaultConfig()
		mutate(&c)
		var ue *UsageError
		if err := c.Validate(); err == nil || !errors.As(err, &ue) {
			t.Errorf("%s: Validate = %v, want a *UsageError", name, err)
		}
	}
	c := DefaultConfig()
	c.ColdSamples, c.Herd, c.RSSConns = 0, 0, 0
	if err := c.Validate(); err != nil {
		t.Errorf("cold, herd and rss-conns 0: %v", err)
	}
}
