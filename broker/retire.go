package broker

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portier/portier/servicedef"
	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// The broker notices what changed. A backend process belongs to a build:
// its definition's version, how it is launched (command, environment,
// directory, activation) and the program file it runs. When any of these
// changes, the process is retired (supervisor.quiesce): it takes no new
// connections, and exits once its live ones have closed. The next Hello starts the new
// build. Changes are seen by the next Hello of the service, by the janitor
// within a second even when no Hello comes, by Reload (SIGHUP) at once, and
// on `portier restart`.

// exeStamp identifies one version of a program file as far as stat can
// tell; the zero stamp means unknown (a stat that failed, a state record
// written before stamps existed) and matches any.
type exeStamp struct {
	Dev   uint64 `json:"dev,omitempty"`
	Ino   uint64 `json:"ino,omitempty"`
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtime_ns"`
}

func (a exeStamp) matches(b exeStamp) bool {
	return a == exeStamp{} || b == exeStamp{} || a == b
}

// exeCheckEvery bounds how often the Hello path stats a program: Hellos
// arriving within it share one stat (a cached look costs tens of
// nanoseconds, a stat around a microsecond: BenchmarkExeStampCached and
// BenchmarkExeStampStat), so a busy service costs at most a thousand stats
// a second, and a rebuild is seen by the first Hello a millisecond after it.
const exeCheckEvery = time.Millisecond

// exeStamps caches the stamp of each program path for exeCheckEvery.
// Lookups are lock-free; two Hellos that both find the stamp old both stat.
type exeStamps struct{ m sync.Map } // path -> *exeCheck

type exeCheck struct {
	at    atomic.Int64 // unix nanoseconds of the stat
	stamp atomic.Pointer[exeStamp]
}

// get returns the stamp of path, from a stat no older than exeCheckEvery.
func (c *exeStamps) get(path string, now time.Time) exeStamp {
	v, ok := c.m.Load(path)
	if !ok {
		v, _ = c.m.LoadOrStore(path, new(exeCheck))
	}
	e := v.(*exeCheck)
	if st := e.stamp.Load(); st != nil && now.UnixNano()-e.at.Load() < int64(exeCheckEvery) {
		return *st
	}
	st, err := statExe(path)
	if err != nil {
		st = exeStamp{} // not runnable now: the start will say why
	}
	e.stamp.Store(&st)
	e.at.Store(now.UnixNano())
	return st
}

// sameLaunch reports whether two definitions start a backend the same way.
// Other fields (idle_timeout, start_timeout, version policy) apply to a
// running backend without restarting it.
func sameLaunch(a, b *servicedef.Definition) bool {
	return a == b || a.Version == b.Version && a.Activation == b.Activation && a.Dir == b.Dir &&
		slices.Equal(a.Command, b.Command) && maps.Equal(a.Env, b.Env)
}

// staleFor says why p no longer is the build def and stamp describe, or ""
// when it still is.
func (p *proc) staleFor(def *servicedef.Definition, stamp exeStamp) string {
	switch {
	case def.Version != p.version:
		return fmt.Sprintf("the definition now names version %s", def.Version)
	case !sameLaunch(p.def, def):
		return "its definition's command, environment, directory or activation changed"
	case !p.stamp.matches(stamp):
		return fmt.Sprintf("its program %s changed", def.Command[0])
	}
	return ""
}

// quiesce retires p: it stops routing new clients to p and asks it to
// quiesce; it exits once its live connections have closed. A backend
// without a control connection (listen-fds activation, or a re-adopted one
// that has not re-registered) is sent SIGTERM instead. It reports false
// when p was already retiring.
func (s *supervisor) quiesce(p *proc, reason string) bool {
	s.unroute(p)
	if p.gone.Load() || p.quiesced.Swap(true) {
		return false
	}
	live, known := p.liveConnections()
	s.b.log.Info("retiring backend: it takes no new connections and exits once its live ones close",
		"service", p.service, "version", p.version, "pid", p.pid, "reason", reason, "live_connections", live, "reported", known)
	if !p.isReady() {
		// Still starting: serveControl sends the quiesce once it
		// registers (the Hellos already waiting for it are served).
		return true
	}
	if c := p.control(); c != nil {
		c.quiesce(reason)
	} else {
		p.terminate()
	}
	return true
}

// retireStale retires every backend whose build is no longer the one its
// service's definition describes: the definition is gone, names another
// version, launches it differently, or its program changed. An invalid or
// unreadable definition retires nothing (the backend keeps serving until
// the definition is fixed). It also forgets recorded start failures of
// versions no longer defined. It returns how many it retired.
func (s *supervisor) retireStale(now time.Time) int {
	retired := 0
	for _, p := range s.snapshot() {
		if p.quiesced.Load() || !p.isReady() {
			continue
		}
		why := ""
		def, err := s.b.defs.Lookup(p.service)
		switch {
		case errors.Is(err, servicedef.ErrUnknown):
			why = "its service is no longer defined"
		case err != nil:
			continue
		default:
			why = p.staleFor(def, s.exes.get(def.Command[0], now))
		}
		if why != "" && s.quiesce(p, why) {
			retired++
		}
	}
	for _, k := range s.failed.keys() {
		if def, err := s.b.defs.Lookup(k.service); errors.Is(err, servicedef.ErrUnknown) || err == nil && def.Version != k.version {
			s.failed.clear(k)
		}
	}
	return retired
}

// retireOtherVersions retires the backends of def's service that serve
// another version than def names: nothing routes to them any more. It
// runs when a Hello starts a backend for def, so a version bump takes the
// old backend out at once.
func (s *supervisor) retireOtherVersions(def *servicedef.Definition) {
	for _, p := range s.snapshot() {
		if p.service == def.Name && p.version != def.Version && p.isReady() {
			s.quiesce(p, fmt.Sprintf("the definition now names version %s", def.Version))
		}
	}
}

// Reload checks every running backend against the current definitions and
// retires those whose definition, version or program changed, as the
// janitor does every second; `portier serve` calls it on SIGHUP. The
// definitions themselves need no reloading: every Hello reads the current
// one.
func (b *Broker) Reload() {
	n := b.sup.retireStale(time.Now())
	b.log.Info("definitions re-checked", "services", b.cfg.ServicesDir, "retired", n)
}

// stopService retires every backend of the service (starting ones once
// they register) and returns those it asked to stop (not those already
// stopping).
func (s *supervisor) stopService(name, reason string) []*proc {
	var out []*proc
	s.mu.Lock()
	seen := make(map[*proc]bool)
	for _, p := range s.byPID {
		if p.service == name && !p.gone.Load() {
			seen[p] = true
		}
	}
	for k, p := range s.procs {
		if k.service == name && !p.gone.Load() {
			seen[p] = true // a start in progress has no pid yet
		}
	}
	s.mu.Unlock()
	for p := range seen {
		if s.quiesce(p, reason) && p.pid != 0 {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b *proc) int { return a.pid - b.pid })
	return out
}

// restartWait bounds how long a restart waits for the new backend beyond
// its start_timeout (the start itself ends by then).
const restartWait = 5 * time.Second

// restartService stops the service's backends and starts a new one from
// the current definition, waiting until it registered (or failed to).
func (s *supervisor) restartService(name string) *pb.ServiceActionResult {
	res := &pb.ServiceActionResult{ServiceName: name}
	now := time.Now()
	for _, p := range s.stopService(name, "portier restart") {
		res.Stopped = append(res.Stopped, p.status(now))
	}
	def, err := s.b.defs.Lookup(name)
	if err != nil {
		// The admin client is portier's own CLI: it knows portier's codes.
		res.StartRefused = refusalFor(s.b.lookupRefusal(name, err, wire.CapRefusalCodes))
		return res
	}
	p, err := s.acquire(def, "")
	if err != nil {
		res.StartRefused = refusalFor(err)
		return res
	}
	t := time.NewTimer(def.StartTimeout + restartWait)
	defer t.Stop()
	select {
	case <-p.ready:
	case <-t.C:
		res.StartRefused = refusalFor(&refusal{code: pb.ErrorCode_ERROR_BACKEND_SPAWN_FAILED,
			reason: fmt.Sprintf("%s@%s did not register within %s", p.service, p.version, def.StartTimeout+restartWait), retryAfter: time.Second})
		return res
	}
	if p.readyErr != nil {
		res.StartRefused = refusalFor(p.readyErr)
		return res
	}
	res.Started = p.status(time.Now())
	return res
}
