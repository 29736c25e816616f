package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// What the bench reads about other processes, from /proc. CPU time comes
// from each thread's schedstat (nanoseconds on a CPU) rather than
// utime/stime in /proc/<pid>/stat, whose 10 ms clock ticks are too coarse for
// phases that cost the broker a few hundred milliseconds. A thread that
// exits inside a phase takes its time with it; Go programs keep their
// threads, and the tick-based total is recorded next to it as a cross-check.

// userHZ is the unit of utime/stime in /proc/<pid>/stat. The kernel fixes
// USER_HZ at 100 for that interface on every architecture Go supports.
const userHZ = 100

// procCPU is one process's CPU time at one instant.
type procCPU struct {
	schedNS int64 // sum of the live threads' schedstat run time
	tickNS  int64 // utime+stime from /proc/<pid>/stat, in ns
}

func readProcCPU(pid int) (procCPU, error) {
	var c procCPU
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return c, err
	}
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
		if err != nil {
			continue // the thread exited between ReadDir and here
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return c, fmt.Errorf("%s/%s/schedstat: %w", dir, t.Name(), err)
		}
		c.schedNS += ns
	}
	st, err := readStatFields(pid)
	if err != nil {
		return c, err
	}
	// Fields after the command: index 0 is field 3 (state); utime and stime
	// are fields 14 and 15.
	ut, err1 := strconv.ParseInt(st[11], 10, 64)
	stime, err2 := strconv.ParseInt(st[12], 10, 64)
	if err1 != nil || err2 != nil {
		return c, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	c.tickNS = (ut + stime) * int64(time.Second/userHZ)
	return c, nil
}

// readSystemCPU returns the machine's busy time (user, nice, system, irq,
// softirq) and steal time from /proc/stat, in ns.
func readSystemCPU() (busy, steal int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var v [8]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
	}
	tick := int64(time.Second / userHZ)
	// user nice system idle iowait irq softirq steal
	return (v[0] + v[1] + v[2] + v[5] + v[6]) * tick, v[7] * tick, nil
}

// readStatFields returns the fields of /proc/<pid>/stat after the
// parenthesised command name (which may contain spaces), starting with the
// state.
func readStatFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return nil, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	return f, nil
}

// procMem is a process's memory and descriptor use from /proc.
type procMem struct {
	RSSKiB  int64 `json:"vm_rss_kib"`
	HWMKiB  int64 `json:"vm_hwm_kib"`
	Threads int   `json:"threads"`
	FDs     int   `json:"fds"`
}

func readProcMem(pid int) (procMem, error) {
	var m procMem
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
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
	if err := sc.Err(); err != nil {
		return m, err
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return m, err
	}
	m.FDs = len(fds)
	return m, nil
}

// procsWithEnv lists the processes whose environment holds every one of
// the given KEY=VALUE entries. The bench finds the backends its broker
// started this way: their PORTIER_BROKER names the bench's private socket,
// so nothing else matches.
func procsWithEnv(entries ...string) []int {
	ds, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, d := range ds {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "environ"))
		if err != nil {
			continue // another user's process, or gone
		}
		env := map[string]bool{}
		for _, kv := range bytes.Split(b, []byte{0}) {
			env[string(kv)] = true
		}
		all := true
		for _, e := range entries {
			all = all && env[e]
		}
		if all {
			out = append(out, pid)
		}
	}
	return out
}

// processGone reports whether pid has exited (gone or a zombie).
func processGone(pid int) bool {
	st, err := readStatFields(pid)
	return err != nil || st[0] == "Z" || st[0] == "X"
}

// stopProcess sends SIGTERM to pid and SIGKILL after grace, and waits until
// it is gone (or reaped by its parent) up to grace more.
func stopProcess(pid int, grace time.Duration) {
	if pid <= 0 || processGone(pid) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if waitGone(pid, grace) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	waitGone(pid, grace)
}

func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !processGone(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

// watchBrokenOutput calls cancel when the bench's stdout or stderr becomes a
// pipe nobody reads (SIGPIPE, then poll reports an error on fd 1 or 2).
// Without it Go would exit on the spot and leave the broker's backends
// running; SIGPIPE from a child's pipe or a socket leaves the run alone.
// The returned function stops watching.
func watchBrokenOutput(cancel context.CancelFunc) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGPIPE)
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		for {
			select {
			case <-ch:
				if outputBroken() {
					cancel()
					return
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
		<-exited
	}
}

func outputBroken() bool {
	fds := []unix.PollFd{{Fd: 1}, {Fd: 2}} // POLLERR and POLLHUP need no request
	if _, err := unix.Poll(fds, 0); err != nil {
		return false
	}
	for _, f := range fds {
		if f.Revents&(unix.POLLERR|unix.POLLHUP) != 0 {
			return true
		}
	}
	return false
}

// raiseNoFile lifts the soft RLIMIT_NOFILE to the hard limit. Children
// inherit it: the broker holds one descriptor per pending connection in the
// RSS phase.
func raiseNoFile() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, err
		}
	}
	return rl.Cur, nil
}

// childEnv is the bench's environment without PORTIER_* variables, so a
// user's PORTIER_SOCKET or a broker environment cannot leak into the
// processes the bench starts.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PORTIER_") {
			env = append(env, kv)
		}
	}
	return env
}

// child is a process the bench started, with line-oriented stdout and a
// bounded copy of its stderr.
type child struct {
	ctx    context.Context // ends the bench's waits on the child
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string // stdout lines; closed at EOF
	stderr *tailBuffer
	done   chan struct{} // closed when Wait returned
	err    error         // Wait's result, valid after done

	// abandon is closed once the bench stops listening to the child, so
	// the stdout reader never blocks on lines nobody will read.
	abandon     chan struct{}
	abandonOnce sync.Once
}

// startChild runs exe with args in its own process group, killed if the
// bench dies (Pdeathsig).
func startChild(ctx context.Context, name, exe string, args ...string) (*child, error) {
	cmd := exec.Command(exe, args...)
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c := &child{ctx: ctx, name: name, cmd: cmd, lines: make(chan string, 16), stderr: &tailBuffer{max: 8 << 10},
		done: make(chan struct{}), abandon: make(chan struct{})}
	cmd.Stderr = c.stderr
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	// Pdeathsig fires when the thread that forked the child exits; the Go
	// runtime only ends threads of goroutines that die locked to them, and
	// the bench locks none, so it fires when the bench itself dies.
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			select {
			case c.lines <- sc.Text():
			case <-c.abandon:
				return
			}
		}
	}()
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// errNoLine: the child ended or timed out before printing the expected line.
var errNoLine = errors.New("no output")

// readLine waits up to d for the next stdout line.
func (c *child) readLine(d time.Duration) (string, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case l, ok := <-c.lines:
		if !ok {
			<-c.done
			return "", fmt.Errorf("%s exited (%v) before answering: %w%s", c.name, c.err, errNoLine, c.stderr.suffix())
		}
		return l, nil
	case <-t.C:
		return "", fmt.Errorf("%s: no answer within %s: %w%s", c.name, d, errNoLine, c.stderr.suffix())
	case <-c.ctx.Done():
		return "", fmt.Errorf("%s: %w", c.name, c.ctx.Err())
	}
}

// expect reads the next line and checks that it is want.
func (c *child) expect(want string, d time.Duration) error {
	l, err := c.readLine(d)
	if err != nil {
		return err
	}
	if l != want {
		return fmt.Errorf("%s said %q, want %q%s", c.name, l, want, c.stderr.suffix())
	}
	return nil
}

func (c *child) send(line string) error {
	_, err := io.WriteString(c.stdin, line+"\n")
	return err
}

func (c *child) release() { c.abandonOnce.Do(func() { close(c.abandon) }) }

// wait waits up to d for the child to exit, then kills it.
func (c *child) wait(d time.Duration) error {
	defer c.release()
	_ = c.stdin.Close()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		c.kill()
		return fmt.Errorf("%s did not exit within %s%s", c.name, d, c.stderr.suffix())
	}
	if c.err != nil {
		return fmt.Errorf("%s: %w%s", c.name, c.err, c.stderr.suffix())
	}
	return nil
}

// kill ends the child (SIGKILL) and waits for it.
func (c *child) kill() {
	defer c.release()
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Kill()
	<-c.done
}

// terminate asks the child to stop (SIGTERM) and kills it after grace.
func (c *child) terminate(grace time.Duration) {
	defer c.release()
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		c.kill()
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

// suffix renders the captured stderr for an error message.
func (t *tailBuffer) suffix() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(string(t.b))
	if s == "" {
		return ""
	}
	return "\n--- its stderr:\n" + s
}

// machineInfo describes where the bench ran.
type machineInfo struct {
	NProc     int    `json:"nproc"`
	CPUModel  string `json:"cpu_model"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	NoFile    uint64 `json:"rlimit_nofile"`
	// Revision is the VCS revision the binary was built from (with
	// "+modified" for a dirty tree), when the build recorded it.
	Revision string `json:"revision,omitempty"`
}

func readMachine() machineInfo {
	m := machineInfo{NProc: runtime.NumCPU(), GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, modified string
		for _, st := range bi.Settings {
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
		m.Revision = rev
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}
