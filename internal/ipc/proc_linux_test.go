package ipc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portier/portier/internal/fdcount"
)

func TestProcessStartTimeSelfAndChild(t *testing.T) {
	fdcount.Check(t)
	self, err := ProcessStartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	again, err := ProcessStartTime(os.Getpid())
	if err != nil || again != self {
		t.Fatalf("re-read: %d, %v; first read %d", again, err, self)
	}
	h := startHelper(t, "wait")
	if got := h.line(t); got != "ready" {
		t.Fatalf("helper: %s", got)
	}
	pid := h.cmd.Process.Pid
	child, err := ProcessStartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if child == self {
		// Ticks are 10 ms; our test binary ran its setup long before.
		t.Errorf("child start time %d equals ours", child)
	}
	if c2, err := ProcessStartTime(pid); err != nil || c2 != child {
		t.Errorf("child re-read: %d, %v; first %d", c2, err, child)
	}
	h.finish(t) // reaped: the pid names no process now
	if _, err := ProcessStartTime(pid); !errors.Is(err, ErrNoProcess) {
		t.Errorf("after exit: %v, want ErrNoProcess", err)
	}
	for _, bad := range []int{0, -1} {
		if _, err := ProcessStartTime(bad); err == nil {
			t.Errorf("pid %d accepted", bad)
		}
	}
}

// statLine builds a /proc/<pid>/stat line with the given comm whose field
// 22 is starttime.
func statLine(comm string, starttime uint64) string {
	f := []string{"4242", "(" + comm + ")"}
	for i := 3; i <= 52; i++ {
		switch i {
		case 3:
			f = append(f, "S")
		case 22:
			f = append(f, fmt.Sprint(starttime))
		default:
			f = append(f, fmt.Sprint(i*7))
		}
	}
	return strings.Join(f, " ") + "\n"
}

func TestParseStatStartTime(t *testing.T) {
	for _, comm := range []string{"cat", "a b c", "x) S 1 2 3 (", ")", "))", "(", "tab\there", "new\nline", ""} {
		got, err := parseStatStartTime([]byte(statLine(comm, 987654321)))
		if err != nil || got != 987654321 {
			t.Errorf("comm %q: %d, %v", comm, got, err)
		}
	}
	for _, bad := range []string{
		"",
		"4242 cat S 1",
		"4242 (cat) S 1 2 3",
		"4242 (cat) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 -5 20",
		"4242 (cat) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 99999999999999999999999 20",
	} {
		if got, err := parseStatStartTime([]byte(bad)); err == nil {
			t.Errorf("%q: parsed as %d", bad, got)
		}
	}
}

func FuzzParseStatStartTime(f *testing.F) {
	f.Add([]byte(statLine("cat", 12345)))
	f.Add([]byte(statLine("a) b (c", 1)))
	f.Add([]byte("1 (x) S"))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := parseStatStartTime(data)
		if err != nil {
			return
		}
		// Whatever parses must re-parse identically when rebuilt.
		if v2, err := parseStatStartTime([]byte(statLine("re", v))); err != nil || v2 != v {
			t.Fatalf("rebuilt %d: %d, %v", v, v2, err)
		}
	})
}

func TestExecutablePath(t *testing.T) {
	got, err := ExecutablePath(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if w, err := filepath.EvalSymlinks(want); err == nil {
		want = w
	}
	if got != want {
		t.Errorf("ExecutablePath(self) = %q, want %q", got, want)
	}
	if _, err := ExecutablePath(1 << 30); !errors.Is(err, ErrNoProcess) {
		t.Errorf("huge pid: %v, want ErrNoProcess", err)
	}
	if _, err := ExecutablePath(0); err == nil {
		t.Error("pid 0 accepted")
	}
}

// TestProcessRunningZombie: an exited process that its parent has not
// waited for yet (a zombie) keeps its /proc entry and start time, but it is
// not running.
func TestProcessRunningZombie(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", "read line")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	st, err := ProcessStartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if !ProcessRunning(pid, st) {
		t.Fatal("a live child is not running")
	}
	if ProcessRunning(pid, st+1) {
		t.Fatal("running with another start time")
	}
	in.Close() // the shell reads EOF and exits; nobody waits for it yet
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatal(err)
		}
		if state, _, err := parseStat(data); err == nil && state == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child never became a zombie: %s", data)
		}
		time.Sleep(time.Millisecond)
	}
	if got, err := ProcessStartTime(pid); err != nil || got != st {
		t.Fatalf("zombie's start time: %d, %v; want %d (the entry is still there)", got, err, st)
	}
	if ProcessRunning(pid, st) {
		t.Error("a zombie counts as running")
	}
	_ = cmd.Wait()
	if ProcessRunning(pid, st) {
		t.Error("a reaped process counts as running")
	}
}
