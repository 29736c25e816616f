package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// What the bench reads about other processes comes from /proc (the reading
// is in proc_linux.go; the parsing here is plain text handling). CPU time
// comes from each thread's schedstat (nanoseconds on a CPU) rather than
// utime/stime in /proc/<pid>/stat, whose 10 ms clock ticks are too coarse for
// phases that cost the broker a few hundred milliseconds. A thread that
// exits inside a phase takes its time with it; Go programs keep their
// threads, and the tick-based total is recorded next to it as a cross-check.

// userHZ is the unit of utime/stime in /proc/<pid>/stat. The kernel fixes
// USER_HZ at 100 for that interface on every architecture Go supports.
const userHZ = 100

// procSample is one process's counters at one instant.
type procSample struct {
	schedNS int64 // sum of the live threads' schedstat run time
	tickNS  int64 // utime+stime from /proc/<pid>/stat, in ns
	counts  ProcCounts
}

// ProcCounts are a process's context switches and read/write syscalls,
// summed over its threads: at one instant, or their growth over a phase.
//
// The context switches are each live thread's voluntary_ctxt_switches
// (the thread blocked: waiting for I/O, a futex, a timer) and
// nonvoluntary_ctxt_switches (it was preempted) from
// /proc/<pid>/task/<tid>/status. SysR and SysW are syscr and syscw from
// /proc/<pid>/io: the calls that go through the kernel's read and write
// paths (read, write, readv, writev, pread, pwrite, sendfile, splice, on a
// socket too), not recvmsg, sendmsg, accept, connect, epoll or futex, so
// they are the data syscalls, not every syscall.
type ProcCounts struct {
	VoluntaryCS    int64 `json:"voluntary_ctxt_switches"`
	NonvoluntaryCS int64 `json:"nonvoluntary_ctxt_switches"`
	SysR           int64 `json:"syscr"`
	SysW           int64 `json:"syscw"`
}

func (c ProcCounts) sub(o ProcCounts) ProcCounts {
	return ProcCounts{c.VoluntaryCS - o.VoluntaryCS, c.NonvoluntaryCS - o.NonvoluntaryCS, c.SysR - o.SysR, c.SysW - o.SysW}
}

func (c ProcCounts) add(o ProcCounts) ProcCounts {
	return ProcCounts{c.VoluntaryCS + o.VoluntaryCS, c.NonvoluntaryCS + o.NonvoluntaryCS, c.SysR + o.SysR, c.SysW + o.SysW}
}

// parseStatusCtxt returns a thread's voluntary and nonvoluntary context
// switches from the content of its /proc/<pid>/task/<tid>/status file.
func parseStatusCtxt(b []byte) (voluntary, nonvoluntary int64, err error) {
	var seen int
	for l := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok || (k != "voluntary_ctxt_switches" && k != "nonvoluntary_ctxt_switches") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", k, err)
		}
		if k == "voluntary_ctxt_switches" {
			voluntary = n
		} else {
			nonvoluntary = n
		}
		seen++
	}
	if seen != 2 {
		return 0, 0, fmt.Errorf("no context switch counts")
	}
	return voluntary, nonvoluntary, nil
}

// parseProcIO returns syscr and syscw from the content of /proc/<pid>/io.
func parseProcIO(b []byte) (syscr, syscw int64, err error) {
	var seen int
	for l := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok || (k != "syscr" && k != "syscw") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", k, err)
		}
		if k == "syscr" {
			syscr = n
		} else {
			syscw = n
		}
		seen++
	}
	if seen != 2 {
		return 0, 0, fmt.Errorf("no syscr and syscw")
	}
	return syscr, syscw, nil
}

// parseSchedstat returns the run time (ns on a CPU) from the content of a
// /proc/<pid>/task/<tid>/schedstat file.
func parseSchedstat(b []byte) (runNS int64, err error) {
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("empty schedstat")
	}
	return strconv.ParseInt(f[0], 10, 64)
}

// parseStatFields returns the fields of a /proc/<pid>/stat file after the
// parenthesised command name (which may contain spaces and parentheses),
// starting with the state.
func parseStatFields(b []byte) ([]string, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("no command field")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return nil, fmt.Errorf("%d fields", len(f))
	}
	return f, nil
}

// statTicksNS is utime+stime, in ns, from parseStatFields's fields.
func statTicksNS(st []string) (int64, error) {
	// Index 0 is field 3 (state); utime and stime are fields 14 and 15.
	ut, err1 := strconv.ParseInt(st[11], 10, 64)
	stime, err2 := strconv.ParseInt(st[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad utime/stime %q %q", st[11], st[12])
	}
	return (ut + stime) * int64(time.Second/userHZ), nil
}

// parseSystemCPU returns the machine's busy time (user, nice, system, irq,
// softirq) and steal time, in ns, from the content of /proc/stat.
func parseSystemCPU(b []byte) (busy, steal int64, err error) {
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("unexpected first line %q", line)
	}
	var v [8]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return 0, 0, err
		}
	}
	tick := int64(time.Second / userHZ)
	// user nice system idle iowait irq softirq steal
	return (v[0] + v[1] + v[2] + v[5] + v[6]) * tick, v[7] * tick, nil
}

// ProcMem is a process's memory and descriptor use from /proc.
type ProcMem struct {
	RSSKiB  int64 `json:"vm_rss_kib"`
	HWMKiB  int64 `json:"vm_hwm_kib"`
	Threads int   `json:"threads"`
	FDs     int   `json:"fds"`
}

// parseStatusMem fills VmRSS, VmHWM and Threads from the content of a
// /proc/<pid>/status file (FDs is counted separately).
func parseStatusMem(b []byte) (ProcMem, error) {
	var m ProcMem
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
		switch k {
		case "VmRSS":
			m.RSSKiB, _ = strconv.ParseInt(v, 10, 64)
		case "VmHWM":
			m.HWMKiB, _ = strconv.ParseInt(v, 10, 64)
		case "Threads":
			m.Threads, _ = strconv.Atoi(v)
		}
	}
	return m, sc.Err()
}

// environHas reports whether the content of a /proc/<pid>/environ file holds
// every one of the KEY=VALUE entries.
func environHas(b []byte, entries []string) bool {
	env := map[string]bool{}
	for _, kv := range bytes.Split(b, []byte{0}) {
		env[string(kv)] = true
	}
	for _, e := range entries {
		if !env[e] {
			return false
		}
	}
	return true
}
