package broker

import (
	"time"
)

// Idle means idle: a backend is quiesced for idleness only when it has no
// live connections, and its idle time counts from the later of the last
// Hello routed to it and the last report of its connections. A backend
// built with package backend reports how many connections it holds
// (handed off and direct alike: clients that skip the broker count too)
// whenever it becomes busy or idle, so the report of zero comes when its
// last connection closed. A backend that does not report (listen-fds
// activation) is judged by its Hellos alone.

// noteConnections records a backend's report of its live connections.
func (p *proc) noteConnections(n uint32) {
	p.live.Store(int64(n))
	p.lastUsed.Store(time.Now().UnixNano())
}

// liveConnections reports the connections the backend said it holds, and
// whether that is known (the live-connection gauge and status use it): it
// is not once the control connection is gone (a backend that stopped
// taking connections, or is between brokers), which carried the reports.
func (p *proc) liveConnections() (int64, bool) {
	n := p.live.Load()
	return n, n >= 0 && p.control() != nil
}

// idleSince is when p's idle time started: its last Hello or report, else
// its start.
func (p *proc) idleSince() time.Time {
	if t := p.lastUsed.Load(); t != 0 {
		return time.Unix(0, t)
	}
	return p.started
}

// quiesceIdle retires the backends that have been idle for their
// definition's idle_timeout: no live connections reported, and no Hello or
// report since. Quiescing is graceful either way: the backend stops taking
// connections and exits once its live ones have closed.
func (s *supervisor) quiesceIdle(now time.Time) {
	s.mu.Lock()
	var idle []*proc
	for k, p := range s.procs {
		if p.def.IdleTimeout <= 0 || !p.isReady() || p.live.Load() > 0 {
			continue
		}
		if now.Sub(p.idleSince()) >= p.def.IdleTimeout {
			idle = append(idle, p)
			delete(s.procs, k) // no Hello gets it from here on
		}
	}
	s.mu.Unlock()
	for _, p := range idle {
		s.quiesce(p, "idle for "+p.def.IdleTimeout.String())
	}
}
