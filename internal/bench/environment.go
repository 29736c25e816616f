package bench

import (
	"runtime"
	"runtime/debug"
	"time"
)

// The environment of a run: the machine, the code, and the load the rest of
// the machine put on it while the bench measured.

// MachineInfo describes where the bench ran.
type MachineInfo struct {
	NProc     int    `json:"nproc"`
	CPUModel  string `json:"cpu_model"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	NoFile    uint64 `json:"rlimit_nofile"`
	// Revision is the VCS revision the binary was built from (with
	// "+modified" for a dirty tree), when the build recorded it.
	Revision string `json:"revision,omitempty"`
}

func readMachine() MachineInfo {
	m := MachineInfo{NProc: runtime.NumCPU(), GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		m.Revision = buildRevision(bi.Settings)
	}
	m.CPUModel, m.Kernel = readCPUModelAndKernel()
	return m
}

// buildRevision is the VCS revision recorded in a build, "+modified" for a
// dirty tree, "" when none was recorded.
func buildRevision(settings []debug.BuildSetting) string {
	var rev, modified string
	for _, st := range settings {
		switch st.Key {
		case "vcs.revision":
			rev = st.Value
		case "vcs.modified":
			modified = st.Value
		}
	}
	if rev != "" && modified == "true" {
		rev += "+modified"
	}
	return rev
}

// CPUSplit is the CPU time of one measured phase by process, in ns.
type CPUSplit struct {
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

func (c CPUSplit) total() int64 { return c.Client + c.Broker + c.Backend + c.Proxy }

// procNames name the measured processes in the order of snapshot.procs.
var procNames = [4]string{"client", "broker", "backend", "proxy"}

// snapshot is one reading of the measured processes' and the machine's
// counters. procs is indexed as procNames.
type snapshot struct {
	procs       [4]procSample
	busy, steal int64 // machine-wide, ns
	at          time.Time
}

// countsDelta is each process's counts between two snapshots, by name.
func countsDelta(a, b snapshot) map[string]ProcCounts {
	m := make(map[string]ProcCounts, len(procNames))
	for i, name := range procNames {
		m[name] = b.procs[i].counts.sub(a.procs[i].counts)
	}
	return m
}

// cpuDelta is the CPU split between two snapshots on a machine of ncpu CPUs.
func cpuDelta(a, b snapshot, ncpu int) CPUSplit {
	d := CPUSplit{
		Client:  b.procs[0].schedNS - a.procs[0].schedNS,
		Broker:  b.procs[1].schedNS - a.procs[1].schedNS,
		Backend: b.procs[2].schedNS - a.procs[2].schedNS,
		Proxy:   b.procs[3].schedNS - a.procs[3].schedNS,
		WallNS:  int64(b.at.Sub(a.at)),
	}
	for i := range a.procs {
		d.TicksTotal += b.procs[i].tickNS - a.procs[i].tickNS
	}
	if all := float64(d.WallNS) * float64(ncpu); all > 0 {
		d.OtherPct = max(0, float64(b.busy-a.busy-d.total())) / all * 100
		d.StealPct = float64(b.steal-a.steal) / all * 100
	}
	return d
}
