package soak

import (
	"bytes"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReaperReapsOrphans: a process orphaned under the soak (as a killed
// broker's backend is) becomes this process's child, and once it dies the
// reaper waits for it, so it does not linger as a zombie; a child started
// through the reaper is left to its own Wait.
func TestReaperReapsOrphans(t *testing.T) {
	rp, err := acquireReaper()
	if err != nil {
		t.Fatal(err)
	}
	defer releaseReaper()

	// sh exits at once and orphans the sleep.
	var out bytes.Buffer
	cmd := exec.Command("sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!")
	cmd.Stdout = &out
	if err := rp.run(cmd); err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatalf("sh printed %q", out.String())
	}
	defer syscall.Kill(pid, syscall.SIGKILL)
	if _, ppid, err := procStat(pid); err != nil || ppid != os.Getpid() {
		t.Fatalf("orphan %d: parent %d (%v), want this process %d (the subreaper)", pid, ppid, err, os.Getpid())
	}
	if !slices.Contains(children(), pid) || !slices.Contains(childrenByParent(), pid) {
		t.Fatalf("orphan %d not among the children %v / %v", pid, children(), childrenByParent())
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, _, err := procStat(pid); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			state, _, _ := procStat(pid)
			t.Fatalf("killed orphan %d still in /proc (state %c) after 10 s", pid, state)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// An owned child that exits before its Wait is not reaped from under
	// it: Wait still sees its exit status.
	owned := exec.Command("sh", "-c", "exit 7")
	if err := rp.start(owned); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * reapEvery) // let the reaper see the zombie
	err = owned.Wait()
	rp.forget(owned.Process.Pid)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 {
		t.Fatalf("owned child's Wait = %v, want exit status 7", err)
	}
}
