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

// ParkedClose is the broker's descriptor count around the moment the
// clients of many parked Hellos (waiting for a backend that is still
// starting) close their connections. A broker that notices a parked client
// leave is back at its baseline at once; one that keeps the descriptor until
// the backend registers or its start times out is not.
type ParkedClose struct {
	Clients int `json:"clients"`
	// IdleFDs: the broker idle after the load phases, before this one.
	IdleFDs int `json:"idle_fds"`
	// BaselineFDs: with the stalled backend's start under way and one
	// sentinel Hello parked on it (which stays throughout): what the broker
	// legitimately holds once the clients have gone.
	BaselineFDs int `json:"baseline_fds"`
	// PendingFDs: with every client's Hello parked as well.
	PendingFDs int `json:"pending_fds"`
	// FDsAfter1s: 1 s after the last client process exited.
	FDsAfter1s int `json:"fds_after_1s"`
	// BackToBaselineMS: the first sample at or below BaselineFDs, in ms
	// after the last client exited; -1 when none was within the second.
	BackToBaselineMS float64 `json:"back_to_baseline_ms"`
	// Samples are the descriptor counts during that second, about every
	// 20 ms.
	Samples []FDSample `json:"samples"`
	Method  string     `json:"method"`
}

// FDSample is the broker's descriptor count at one instant.
type FDSample struct {
	MS  float64 `json:"ms"` // since the last client exited
	FDs int     `json:"fds"`
}

// parkedWindow is how long after the clients closed the broker must be
// back at its baseline.
const parkedWindow = time.Second

// rssPending parks RSSConns Hellos in the broker, samples its memory, then
// closes them and follows its descriptor count for parkedWindow.
func (e *env) rssPending(r *RSSResult) (*ParkedClose, error) {
	n, procs := e.cfg.RSSConns, e.cfg.RSSProcs
	r.Method = fmt.Sprintf("%d connections from %d client processes each send a Hello (with the handoff capability) for a service whose "+
		"backend never registers (start_timeout 5m); once the broker holds a descriptor for each of them (its descriptor count is at least %d and steady), "+
		"VmRSS from /proc/<broker>/status is sampled 10 times, 100 ms apart, and the largest is reported", n, procs, n)
	pc := &ParkedClose{Clients: n, BackToBaselineMS: -1,
		Method: fmt.Sprintf("one sentinel connection parks a Hello for the stalled service, which starts its backend; once the broker's descriptor "+
			"count is steady it is the baseline. The %d connections above park theirs too; their %d processes then exit, closing every one, and the "+
			"broker's /proc/<pid>/fd is counted every 20 ms for %s after the last exited", n, procs, parkedWindow)}
	base, err := readProcMem(e.brokerPID)
	if err != nil {
		return nil, err
	}
	pc.IdleFDs = base.FDs
	var holders []*child
	defer func() {
		for _, c := range holders {
			c.kill()
		}
	}()
	hold := func(name string, k int) (*child, error) {
		c, err := startChild(e.ctx, name, e.exe, ClientCommand, "--mode", "hold",
			"--socket", e.sock, "--service", svcStall, "--conns", strconv.Itoa(k))
		if err != nil {
			return nil, err
		}
		holders = append(holders, c)
		return c, nil
	}
	sentinel, err := hold("sentinel holder", 1)
	if err != nil {
		return nil, err
	}
	if l, err := sentinel.readLine(phaseTimeout); err != nil {
		return nil, err
	} else if l != "held 1" {
		return nil, fmt.Errorf("%s said %q", sentinel.name, l)
	}
	// The sentinel's Hello starts the stalled backend: wait for it to run
	// and for the broker's descriptors to settle.
	if pc.BaselineFDs, err = e.steadyFDs(0, func() bool {
		return len(ProcsWithEnv("PORTIER_BROKER="+e.sock, "PORTIER_SERVICE="+svcStall)) > 0
	}); err != nil {
		return nil, fmt.Errorf("baseline before parking: %w", err)
	}

	var clients []*child
	for i := range procs {
		k := n / procs
		if i < n%procs {
			k++
		}
		c, err := hold(fmt.Sprintf("holder %d", i), k)
		if err != nil {
			return nil, err
		}
		clients = append(clients, c)
	}
	for _, c := range clients {
		l, err := c.readLine(phaseTimeout)
		if err != nil {
			return nil, err
		}
		if !strings.HasPrefix(l, "held ") {
			return nil, fmt.Errorf("%s said %q", c.name, l)
		}
	}
	// Every Hello has been written; wait until the broker holds a
	// descriptor for each connection and the count has settled.
	if _, err := e.steadyFDs(n, nil); err != nil {
		return nil, fmt.Errorf("%w (%d before): not every connection reached it", err, base.FDs)
	}
	for range 10 {
		m, err := readProcMem(e.brokerPID)
		if err != nil {
			return nil, err
		}
		if m.RSSKiB > r.Pending.RSSKiB {
			r.Pending = m
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.PendingConns = n
	pc.PendingFDs = r.Pending.FDs
	e.logf("broker with %d pending Hellos: VmRSS %.1f MiB, %d descriptors, %d threads",
		n, float64(r.Pending.RSSKiB)/1024, r.Pending.FDs, r.Pending.Threads)

	for _, c := range clients {
		if err := c.wait(30 * time.Second); err != nil {
			return nil, err
		}
	}
	if err := e.followParked(pc); err != nil {
		return nil, err
	}
	e.logf("%d parked clients closed: broker descriptors %d at +%s (baseline %d, idle %d, parked %d)",
		n, pc.FDsAfter1s, parkedWindow, pc.BaselineFDs, pc.IdleFDs, pc.PendingFDs)

	if err := sentinel.wait(30 * time.Second); err != nil {
		return nil, err
	}
	holders = nil
	for _, pid := range ProcsWithEnv("PORTIER_BROKER="+e.sock, "PORTIER_SERVICE="+svcStall) {
		stopProcess(pid, 2*time.Second)
	}
	time.Sleep(time.Second)
	if r.AfterRelease, err = readProcMem(e.brokerPID); err != nil {
		return nil, err
	}
	return pc, nil
}

// steadyFDs waits until the broker holds at least atLeast descriptors, the
// same number in 5 readings 20 ms apart, and ready (if not nil) holds, and
// returns that number.
func (e *env) steadyFDs(atLeast int, ready func() bool) (int, error) {
	deadline := time.Now().Add(30 * time.Second)
	last, stable := -1, 0
	for {
		fds, err := countFDs(e.brokerPID)
		if err != nil {
			return 0, err
		}
		if fds >= atLeast && fds == last && (ready == nil || ready()) {
			stable++
		} else {
			stable = 0
		}
		if stable >= 5 {
			return fds, nil
		}
		last = fds
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the broker's descriptor count did not settle at %d or more within 30 s (last %d)", atLeast, fds)
		}
		select {
		case <-e.ctx.Done():
			return 0, e.ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// followParked counts the broker's descriptors from now (the last client
// just exited) until parkedWindow has passed.
func (e *env) followParked(pc *ParkedClose) error {
	t0 := time.Now()
	for {
		el := time.Since(t0)
		final := el >= parkedWindow
		fds, err := countFDs(e.brokerPID)
		if err != nil {
			return err
		}
		ms := float64(el) / 1e6
		pc.Samples = append(pc.Samples, FDSample{MS: ms, FDs: fds})
		if fds <= pc.BaselineFDs && pc.BackToBaselineMS < 0 {
			pc.BackToBaselineMS = ms
		}
		if final {
			pc.FDsAfter1s = fds
			return nil
		}
		select {
		case <-e.ctx.Done():
			return e.ctx.Err()
		case <-time.After(min(20*time.Millisecond, parkedWindow-el)):
		}
	}
}
