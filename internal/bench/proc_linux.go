package bench

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portier/portier/internal/ipc"
)

// checkPlatform: the bench measures on Linux.
func checkPlatform() error { return nil }

// makePrivateDir creates d owned by the user with mode 0700, so nobody else
// reaches the bench's sockets.
func makePrivateDir(d string) error { return ipc.EnsurePrivateDir(d) }

// readProcSample reads pid's CPU time, context switches and read/write
// syscalls.
func readProcSample(pid int) (procSample, error) {
	var c procSample
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
		ns, err := parseSchedstat(b)
		if err != nil {
			return c, fmt.Errorf("%s/%s/schedstat: %w", dir, t.Name(), err)
		}
		b, err = os.ReadFile(filepath.Join(dir, t.Name(), "status"))
		if err != nil {
			continue // exited meanwhile: its run time goes with its counts
		}
		vol, nonvol, err := parseStatusCtxt(b)
		if err != nil {
			return c, fmt.Errorf("%s/%s/status: %w", dir, t.Name(), err)
		}
		c.schedNS += ns
		c.counts.VoluntaryCS += vol
		c.counts.NonvoluntaryCS += nonvol
	}
	st, err := readStatFields(pid)
	if err != nil {
		return c, err
	}
	if c.tickNS, err = statTicksNS(st); err != nil {
		return c, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return c, err
	}
	if c.counts.SysR, c.counts.SysW, err = parseProcIO(b); err != nil {
		return c, fmt.Errorf("/proc/%d/io: %w", pid, err)
	}
	return c, nil
}

// readSystemCPU returns the machine's busy and steal time from /proc/stat.
func readSystemCPU() (busy, steal int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	if busy, steal, err = parseSystemCPU(b); err != nil {
		return 0, 0, fmt.Errorf("/proc/stat: %w", err)
	}
	return busy, steal, nil
}

func readStatFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	f, err := parseStatFields(b)
	if err != nil {
		return nil, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return f, nil
}

func readProcMem(pid int) (ProcMem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcMem{}, err
	}
	m, err := parseStatusMem(b)
	if err != nil {
		return m, err
	}
	if m.FDs, err = countFDs(pid); err != nil {
		return m, err
	}
	return m, nil
}

// countFDs is the number of descriptors pid holds.
func countFDs(pid int) (int, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	return len(fds), nil
}

// ProcsWithEnv lists the processes whose environment holds every one of the
// given KEY=VALUE entries. The bench finds the backends its broker started
// this way: their PORTIER_BROKER names the bench's private socket, so
// nothing else matches.
func ProcsWithEnv(entries ...string) []int {
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
		if environHas(b, entries) {
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
// memory phase.
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

// childSysProcAttr puts a child in its own process group and kills it if
// the bench dies. Pdeathsig fires when the thread that forked the child
// exits; the Go runtime only ends threads of goroutines that die locked to
// them, and the bench locks none, so it fires when the bench itself dies.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
