package bench

import (
	"context"
	"crypto/rand"
	"os"
	"slices"
	"testing"
	"time"
)

func TestReadOwnProcess(t *testing.T) {
	c, err := readProcSample(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if c.schedNS <= 0 {
		t.Errorf("this process has run %d ns", c.schedNS)
	}
	// Reading /proc went through read(2): the next sample counts more.
	c2, err := readProcSample(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if d := c2.counts.sub(c.counts); d.SysR <= 0 || d.VoluntaryCS < 0 || d.NonvoluntaryCS < 0 {
		t.Errorf("counts between two samples: %+v, want more read syscalls", d)
	}
	m, err := readProcMem(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	before := m.FDs
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := readProcMem(os.Getpid())
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if m2.FDs != before+1 || m2.RSSKiB <= 0 || m2.Threads < 1 {
		t.Errorf("with one more file open: %+v (before: %d fds)", m2, before)
	}
	if _, _, err := readSystemCPU(); err != nil {
		t.Error(err)
	}
}

// TestProcsWithEnvAndStop: a child found by its environment, stopped by
// stopProcess, is gone; the bench's cleanup relies on both.
func TestProcsWithEnvAndStop(t *testing.T) {
	token := rand.Text()
	mark := "PORTIER_BENCH_TEST_MARK=" + token
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(helperEnv, "wait-stdin")
	t.Setenv("PORTIER_BENCH_TEST_MARK", token)
	c, err := startChild(context.Background(), "helper", exe)
	if err != nil {
		t.Fatal(err)
	}
	defer c.kill()
	if err := c.expect("ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// childEnv drops PORTIER_* variables: the mark must not reach it.
	if got := ProcsWithEnv(mark); len(got) != 0 {
		t.Errorf("ProcsWithEnv(%s) = %v: a PORTIER_ variable reached the child", mark, got)
	}
	want := helperEnv + "=wait-stdin"
	if got := ProcsWithEnv(want); !slices.Contains(got, c.pid()) {
		t.Fatalf("ProcsWithEnv(%s) = %v, want it to hold %d", want, got, c.pid())
	}
	stopProcess(c.pid(), 5*time.Second)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the child outlived stopProcess")
	}
	c.release()
	if slices.Contains(ProcsWithEnv(want), c.pid()) {
		t.Errorf("pid %d still listed after it exited", c.pid())
	}
}
