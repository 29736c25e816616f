package bench

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// RSSResult is the broker's memory, idle and with many pending connections.
type RSSResult struct {
	IdleStart     ProcMem `json:"idle_start"`
	IdleAfterLoad ProcMem `json:"idle_after_load"`
	// Pending: RSSConns connections that each sent a Hello for a service
	// whose backend never registers, held open while the broker waits for
	// it; the largest VmRSS of 10 samples 100 ms apart.
	Pending      ProcMem `json:"pending"`
	PendingConns int     `json:"pending_conns"`
	// AfterRelease: 1 s after those connections closed and the stalled
	// backend was stopped.
	AfterRelease ProcMem `json:"after_release"`
	Method       string  `json:"method"`
}

// rssPending holds RSSConns Hellos pending in the broker and samples its
// memory.
func (e *env) rssPending(r *RSSResult) error {
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
		c, err := startChild(e.ctx, fmt.Sprintf("holder %d", i), e.exe, ClientCommand, "--mode", "hold",
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
	for _, pid := range ProcsWithEnv("PORTIER_BROKER="+e.sock, "PORTIER_SERVICE="+svcStall) {
		stopProcess(pid, 2*time.Second)
	}
	time.Sleep(time.Second)
	if r.AfterRelease, err = readProcMem(e.brokerPID); err != nil {
		return err
	}
	return nil
}
