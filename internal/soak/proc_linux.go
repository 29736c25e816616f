package soak

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fdSample counts pid's descriptors by kind.
func fdSample(pid int) ProcSample {
	p := ProcSample{PID: pid}
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		p.FDs, p.Err = -1, err.Error()
		return p
	}
	p.FDKinds = map[string]int{}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed since the listing
		}
		p.FDs++
		p.FDKinds[fdKind(target)]++
	}
	return p
}

func fdKind(target string) string {
	switch {
	case strings.HasPrefix(target, "socket:"):
		return "socket"
	case target == "anon_inode:[pidfd]":
		return "pidfd"
	case strings.HasPrefix(target, "pipe:"):
		return "pipe"
	case target == "anon_inode:[eventpoll]":
		return "epoll"
	case strings.HasPrefix(target, "/"):
		return "file"
	}
	return "other"
}

// procStat returns pid's state letter and parent pid from /proc/<pid>/stat.
func procStat(pid int) (state byte, ppid int, err error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, err
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, 0, errors.New("malformed stat")
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0][0], ppid, err
}

// alive reports whether pid is a running (not exited, not zombie) process.
func alive(pid int) bool {
	state, _, err := procStat(pid)
	return err == nil && state != 'Z' && state != 'X'
}

// threads is pid's OS thread count.
func threads(pid int) (int, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, errors.New("no Threads line")
}

// hasEnv reports whether pid's environment holds every one of kvs
// ("KEY=value").
func hasEnv(pid int, kvs ...string) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
	if err != nil {
		return false
	}
	have := map[string]bool{}
	for kv := range bytes.SplitSeq(b, []byte{0}) {
		have[string(kv)] = true
	}
	for _, kv := range kvs {
		if !have[kv] {
			return false
		}
	}
	return true
}

// marked lists the live processes whose environment holds kv.
func marked(kv string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if hasEnv(pid, kv) && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// reaper makes this process the child subreaper of its descendants, as an
// init does for a session, and reaps the orphans that end as its children:
// the backends of a SIGKILLed broker. Without it a killed orphan stays a
// zombie wherever pid 1 does not reap (many containers), which no real
// system does. Children started through start are left to their
// exec.Cmd.Wait.
type reaper struct {
	mu    sync.Mutex
	owned map[int]bool
	was   bool // subreaper before Run
	stop  chan struct{}
	done  chan struct{}
}

// The subreaper attribute is the process's, so concurrent soaks share one
// reaper.
var (
	reaperMu   sync.Mutex
	reaperRefs int
	theReaper  *reaper
)

const reapEvery = 50 * time.Millisecond

func acquireReaper() (*reaper, error) {
	reaperMu.Lock()
	defer reaperMu.Unlock()
	if reaperRefs == 0 {
		// The kernel writes an int there; a heap object does not move.
		was := new(int32)
		err := unix.Prctl(unix.PR_GET_CHILD_SUBREAPER, uintptr(unsafe.Pointer(was)), 0, 0, 0)
		runtime.KeepAlive(was)
		if err != nil {
			return nil, fmt.Errorf("prctl(PR_GET_CHILD_SUBREAPER): %w", err)
		}
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return nil, fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", err)
		}
		theReaper = &reaper{owned: map[int]bool{}, was: *was != 0, stop: make(chan struct{}), done: make(chan struct{})}
		go theReaper.loop()
	}
	reaperRefs++
	return theReaper, nil
}

func releaseReaper() {
	reaperMu.Lock()
	defer reaperMu.Unlock()
	reaperRefs--
	if reaperRefs > 0 {
		return
	}
	r := theReaper
	theReaper = nil
	close(r.stop)
	<-r.done
	if !r.was {
		_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	}
	r.reap() // orphans that ended since the last tick
}

// start starts cmd as a child the reaper leaves alone.
func (r *reaper) start(cmd *exec.Cmd) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	r.owned[cmd.Process.Pid] = true
	return nil
}

// run starts cmd as start does and waits for it.
func (r *reaper) run(cmd *exec.Cmd) error {
	if err := r.start(cmd); err != nil {
		return err
	}
	err := cmd.Wait()
	r.forget(cmd.Process.Pid)
	return err
}

// forget drops pid once its Wait returned.
func (r *reaper) forget(pid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.owned, pid)
}

func (r *reaper) loop() {
	defer close(r.done)
	t := time.NewTicker(reapEvery)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.reap()
		}
	}
}

// reap waits for every zombie child that no exec.Cmd owns.
func (r *reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, pid := range children() {
		if r.owned[pid] {
			continue
		}
		if state, _, err := procStat(pid); err != nil || state != 'Z' {
			continue
		}
		var ws unix.WaitStatus
		_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
	}
}

// children lists this process's children, from every thread's
// /proc/self/task/<tid>/children (a child belongs to the thread that
// forked it; an orphan to the one the kernel picked), or, on a kernel
// built without those files, from the parent pid of every process.
func children() []int {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil
	}
	var pids []int
	listed := false
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join("/proc/self/task", t.Name(), "children"))
		if err != nil {
			continue
		}
		listed = true
		for f := range strings.FieldsSeq(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	if listed {
		return pids
	}
	return childrenByParent()
}

// childrenByParent lists this process's children from the parent pid of
// every process.
func childrenByParent() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid, err := procStat(pid); err == nil && ppid == self {
			pids = append(pids, pid)
		}
	}
	return pids
}
