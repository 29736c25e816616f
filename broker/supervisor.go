package broker

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portier/portier/handoff"
	"github.com/portier/portier/internal/ipc"
	"github.com/portier/portier/servicedef"
	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// procKey identifies a backend build: a service at the version its
// definition names.
type procKey struct{ service, version string }

// proc is one backend process the broker started (or re-adopted).
type proc struct {
	procKey
	def        *servicedef.Definition
	endpoint   string
	secretHash [32]byte
	listenFDs  bool
	started    time.Time

	// Set once the process runs.
	pid       int
	startTime uint64
	child     bool     // started by this broker run (else re-adopted): Wait works
	procOS             // what the broker holds of the process: spawn_<os>.go
	exe       string   // guarded by supervisor.mu
	exeSHA256 string   // guarded by supervisor.mu
	stamp     exeStamp // of def.Command[0] when it was started (retire.go)

	ready     chan struct{} // closed when registered (or failed to)
	readyOnce sync.Once
	readyErr  error

	wmu       sync.Mutex
	readyDone bool     // ready is closed and waiters were dispatched
	waiters   []func() // Hellos parked until ready
	dispatch  func(func())

	// readoptTimer gives up on a recorded backend that does not
	// re-register; stopped at shutdown so it cannot fire after Serve.
	readoptTimer *time.Timer

	exited chan struct{} // closed when the process is known to be gone
	gone   atomic.Bool
	// watch notices the exit of a re-adopted backend at once (pidfd,
	// kqueue); nil for children (their Wait does) and where the platform
	// cannot. Set before the process is in the tables, closed by exited
	// and shutdown.
	watch exitWatch

	ctrl     atomic.Pointer[controlConn]
	lastUsed atomic.Int64 // unix nanoseconds of the last Hello routed here or connection report (idle.go)
	live     atomic.Int64 // connections the backend last reported open; -1 until it reports
	routed   atomic.Uint64
	quiesced atomic.Bool // retired: routes nothing new, exits once drained (retire.go)
}

// handoffKey names p's process for the handoff policy's failed-attempt
// window: a new process of the same service and version starts with a clean
// window.
func (p *proc) handoffKey() handoff.BackendKey {
	return handoff.BackendKey{Service: p.service, Version: p.version, PID: p.pid, StartTime: p.startTime}
}

func (p *proc) control() *controlConn { return p.ctrl.Load() }

func (p *proc) touch() {
	p.lastUsed.Store(time.Now().UnixNano())
	p.routed.Add(1)
}

func (p *proc) markReady(err error) {
	p.readyOnce.Do(func() {
		p.readyErr = err
		close(p.ready)
		p.wmu.Lock()
		ws := p.waiters
		p.waiters, p.readyDone = nil, true
		p.wmu.Unlock()
		for _, w := range ws {
			p.dispatch(w)
		}
	})
}

// whenReady runs fn once p is ready or failed to become ready: at once on
// the caller's goroutine when that is already known, else later on a
// goroutine of its own.
//
// A Hello waiting for a backend to start parks here as a closure rather than
// as a blocked goroutine: 10,000 clients waiting on a cold backend then cost
// the broker their sockets and decoded Hellos, not 10,000 goroutine stacks.
func (p *proc) whenReady(fn func()) {
	p.wmu.Lock()
	if !p.readyDone {
		p.waiters = append(p.waiters, fn)
		p.wmu.Unlock()
		return
	}
	p.wmu.Unlock()
	fn()
}

func (p *proc) isReady() bool {
	select {
	case <-p.ready:
		return p.readyErr == nil
	default:
		return false
	}
}

// errBackendGone is the readiness of a backend that went away before it
// could serve: a re-adopted backend that exited, or did not re-register in
// time. A Hello parked on it does not get this as its answer: it asks for a
// fresh start instead (Broker.awaitBackend), and only one that found its
// backend gone maxReacquire times in a row is refused with it.
var errBackendGone = &refusal{code: pb.ErrorCode_ERROR_BACKEND_SPAWN_FAILED,
	reason:     "the backend exited before it could serve this Hello, each time it was started for it; see `portier status` and the backend's log",
	retryAfter: time.Second}

// supervisor owns the table of backends.
type supervisor struct {
	b *Broker

	saveMu sync.Mutex // serializes saveState

	mu       sync.Mutex
	procs    map[procKey]*proc // current generation per key
	byPID    map[int]*proc     // every known live process, for registration
	failures map[procKey][]time.Time
	failed   failureLog // the last failed start per key, for status
	exes     exeStamps  // recent stamps of the programs definitions name

	// workers are the spawn goroutines; each lives as long as its process
	// (it reaps it). Shutdown waits for them only when it stops backends.
	workers sync.WaitGroup

	// starting is read-held by each spawn from starting its process until
	// the pid is in byPID. A child can register before the spawning
	// goroutine runs again; verify, not finding a pid, write-locks it to
	// wait for the starts in progress instead of refusing their backends.
	starting sync.RWMutex
}

func newSupervisor(b *Broker) *supervisor {
	return &supervisor{
		b:        b,
		procs:    make(map[procKey]*proc),
		byPID:    make(map[int]*proc),
		failures: make(map[procKey][]time.Time),
	}
}

// acquire returns the backend for def, starting it if needed, without
// waiting for it to become ready (see proc.whenReady). Concurrent callers for
// one key share one start (single flight).
func (s *supervisor) acquire(def *servicedef.Definition, traceparent string) (*proc, error) {
	k := procKey{def.Name, def.Version}
	stamp := s.exes.get(def.Command[0], time.Now())
	s.mu.Lock()
	if s.b.shutting.Load() {
		// shutdown has taken (or is taking) its snapshot of starting
		// backends: a start now would outlive Serve.
		s.mu.Unlock()
		return nil, shuttingDown()
	}
	p := s.procs[k]
	if p != nil && (p.gone.Load() || p.quiesced.Load() || (isClosed(p.ready) && p.readyErr != nil)) {
		p = nil
	}
	var stale *proc
	var why string
	if p != nil {
		if why = p.staleFor(def, stamp); why == "" {
			s.mu.Unlock()
			return p, nil
		}
		// Rebuilt or redefined: this Hello starts the new build, and the
		// old process drains (retired below, outside the lock).
		stale, p = p, nil
		delete(s.procs, k)
	}
	if retry := s.budgetLocked(k, time.Now()); retry > 0 {
		s.mu.Unlock()
		return nil, &refusal{code: pb.ErrorCode_ERROR_RATE_LIMITED,
			reason:     fmt.Sprintf("%s@%s failed to start %d times in %s; not starting it again yet", k.service, k.version, s.b.cfg.SpawnFailures, s.b.cfg.SpawnWindow),
			retryAfter: retry}
	}
	p, err := s.newProc(def)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	p.stamp = stamp
	s.procs[k] = p
	s.mu.Unlock()
	if stale != nil {
		s.quiesce(stale, why)
	}
	s.retireOtherVersions(def)
	s.workers.Add(1)
	go func() {
		defer s.workers.Done()
		s.spawn(p, traceparent)
	}()
	return p, nil
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// budgetLocked reports how long to wait before the next start of k is
// allowed; 0 means now.
func (s *supervisor) budgetLocked(k procKey, now time.Time) time.Duration {
	window := s.b.cfg.SpawnWindow
	fs := s.failures[k]
	i := 0
	for i < len(fs) && now.Sub(fs[i]) >= window {
		i++
	}
	fs = fs[i:]
	if len(fs) == 0 {
		delete(s.failures, k)
	} else {
		s.failures[k] = fs
	}
	if len(fs) < s.b.cfg.SpawnFailures {
		return 0
	}
	return fs[len(fs)-s.b.cfg.SpawnFailures].Add(window).Sub(now)
}

func (s *supervisor) recordFailure(k procKey) {
	s.mu.Lock()
	s.failures[k] = append(s.failures[k], time.Now())
	s.mu.Unlock()
}

// newProc prepares a backend's identity: a fresh endpoint path in the
// private directory and a fresh spawn secret.
func (s *supervisor) newProc(def *servicedef.Definition) (*proc, error) {
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(def.Name + "\x00" + def.Version))
	endpoint := backendEndpoint(s.b.cfg.Socket, hex.EncodeToString(sum[:5]), hex.EncodeToString(rnd[:]))
	p := &proc{
		dispatch:  s.dispatchWaiter,
		procKey:   procKey{def.Name, def.Version},
		def:       def,
		endpoint:  endpoint,
		listenFDs: def.Activation == servicedef.ActivationListenFDs,
		ready:     make(chan struct{}),
		exited:    make(chan struct{}),
	}
	p.live.Store(-1)
	return p, nil
}

// spawn starts p and waits (up to its start timeout) for its registration.
func (s *supervisor) spawn(p *proc, traceparent string) {
	log := s.b.log.With("service", p.service, "version", p.version)
	// The program is checked like the definition that names it: one that
	// someone else could replace is not run. Nothing was started, so this
	// does not count against the spawn budget: once fixed, the next Hello
	// starts it.
	if err := servicedef.CheckExecutable(p.def.Command[0]); errors.Is(err, servicedef.ErrUnsafeExecutable) {
		var ee *servicedef.ExecError
		errors.As(err, &ee)
		s.b.metrics.spawn(p.service, "unsafe_executable")
		log.Warn("backend not started: its program could be replaced by someone else",
			"command", ee.Command, "path", ee.Path, "problem", ee.Problem, "reason", ee.Reason, "fix", ee.Fix)
		s.failedStart(p, &refusal{code: pb.ErrorCode_ERROR_BACKEND_SPAWN_FAILED,
			reason:  fmt.Sprintf("%s@%s was not started: %v; fix: %s", p.service, p.version, err, ee.Fix),
			details: map[string]string{"command": ee.Command, "unsafe_path": ee.Path, "problem": string(ee.Problem), "fix": ee.Fix}}, "", false)
		s.forget(p)
		return
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		p.markReady(&refusal{code: pb.ErrorCode_ERROR_INTERNAL, reason: "no randomness for the spawn secret: " + err.Error()})
		return
	}
	p.secretHash = sha256.Sum256(secret)
	p.started = time.Now()
	s.starting.RLock()
	wait, logPath, err := s.start(p, secret, traceparent)
	clear(secret)
	if err != nil {
		s.starting.RUnlock()
		s.b.metrics.spawn(p.service, "failed")
		log.Warn("backend failed to start", "err", err, "log", logPath)
		s.failedStart(p, &refusal{code: pb.ErrorCode_ERROR_BACKEND_SPAWN_FAILED,
			reason: fmt.Sprintf("could not start %s@%s: %v", p.service, p.version, err), retryAfter: time.Second,
			details: map[string]string{"command": p.def.Command[0], "log": logPath}}, logPath, true)
		s.forget(p)
		return
	}
	p.child = true
	s.mu.Lock()
	s.byPID[p.pid] = p
	s.mu.Unlock()
	s.starting.RUnlock()
	log.Info("backend started", "pid", p.pid, "activation", string(p.def.Activation), "log", logPath)
	s.b.metrics.spawn(p.service, "started")
	if p.listenFDs {
		// The broker bound the socket itself: usable at once through the
		// reconnect route.
		s.failed.clear(p.procKey)
		p.markReady(nil)
	}

	waitDone := make(chan error, 1)
	go func() { waitDone <- wait() }()
	timer := time.NewTimer(p.def.StartTimeout)
	defer timer.Stop()
	select {
	case <-p.ready:
	case err := <-waitDone:
		if p.isReady() {
			// It registered, then exited before this goroutine looked
			// (select picks at random when both are ready): not a failed
			// start, which would count against the spawn budget.
			s.exited(p, log, err)
			return
		}
		s.startFailed(p, log, fmt.Sprintf("exited before registering: %v", exitStatus(err)), exitStatus(err), logPath)
		s.exited(p, log, err)
		return
	case <-timer.C:
		p.kill()
		err := <-waitDone
		s.startFailed(p, log, fmt.Sprintf("did not register within start_timeout %s", p.def.StartTimeout), exitStatus(err), logPath)
		s.exited(p, log, err)
		return
	}
	if p.readyErr == nil {
		s.b.sup.saveState()
	}
	s.exited(p, log, <-waitDone)
}

func (s *supervisor) startFailed(p *proc, log interface {
	Warn(string, ...any)
}, why, status, logPath string) {
	if s.b.shutting.Load() {
		// The broker began to stop while the backend started: it could not
		// register (the broker's socket is gone, or going) and says so.
		// Not the program's failure: the Hellos waiting for it are told to
		// retry with the successor, and nothing counts against the start
		// budget.
		log.Warn("backend start cut short by the broker's stop", "pid", p.pid, "why", why, "log", logPath)
		p.markReady(shuttingDown())
		return
	}
	s.b.metrics.spawn(p.service, "failed")
	log.Warn("backend failed to start", "pid", p.pid, "why", why, "log", logPath)
	s.failedStart(p, spawnRefusal(p, why, status, logPath), logPath, true)
}

// exited records that p's process is gone.
func (s *supervisor) exited(p *proc, log interface {
	Info(string, ...any)
}, waitErr error) {
	if p.gone.Swap(true) {
		return
	}
	close(p.exited)
	// Hellos still parked on it (a re-adopted backend that died before it
	// re-registered) go to a fresh start; for a child that never
	// registered, spawn has already answered them with the failed start.
	p.markReady(errBackendGone)
	if p.watch != nil {
		p.watch.close()
	}
	removeEndpoint(p.endpoint) // a killed backend leaves its socket behind
	log.Info("backend exited", "pid", p.pid, "status", exitStatus(waitErr))
	if c := p.ctrl.Load(); c != nil {
		c.conn.Close()
	}
	s.forget(p)
	s.b.orch.ForgetBackend(p.handoffKey())
	p.releaseOS()
	s.saveState()
}

// forget removes p from the tables if it is still the current generation.
func (s *supervisor) forget(p *proc) {
	s.mu.Lock()
	if s.procs[p.procKey] == p {
		delete(s.procs, p.procKey)
	}
	if p.pid != 0 && s.byPID[p.pid] == p {
		delete(s.byPID, p.pid)
	}
	s.mu.Unlock()
}

// serveControl verifies a backend's registration and then serves its
// control connection until it closes.
func (s *supervisor) serveControl(c acceptedConn, cred ipc.Cred, f *pb.Frame) {
	defer c.Close()
	msg, err := wire.DecodeBackendControl(f.GetPayload())
	if err != nil {
		s.replyRegister(c, f, err)
		return
	}
	if msg.GetRegister() == nil {
		s.replyRegister(c, f, &refusal{code: pb.ErrorCode_ERROR_PEER_REJECTED, reason: "the first control message must be a Register"})
		return
	}
	reg := msg.GetRegister()
	p, err := s.verify(reg, cred)
	if err == nil && !p.child {
		// A backend recorded by a previous broker: the broker takes hold of
		// its process only now that it proved to be the recorded one.
		err = p.adoptOS()
	}
	if err != nil {
		s.b.metrics.registrations.WithLabelValues("refused").Inc()
		s.b.log.Warn("backend registration refused", "pid", cred.PID, "service", reg.GetServiceName(), "err", err)
		s.replyRegister(c, f, err)
		return
	}
	ctrl := &controlConn{conn: c, proc: p, handoffCapable: reg.GetHandoffCapable(),
		zeroRTTCapable: reg.GetHandoffCapable() && reg.GetZeroRttCapable(), orch: s.b.orch, log: s.b.log,
		pending: make(map[uint64]*handoff.Attempt)}
	if !p.ctrl.CompareAndSwap(nil, ctrl) {
		s.replyRegister(c, f, &refusal{code: pb.ErrorCode_ERROR_PEER_REJECTED, reason: "this backend is already registered"})
		return
	}
	if err := s.replyRegister(c, f, nil); err != nil {
		p.ctrl.CompareAndSwap(ctrl, nil)
		return
	}
	s.b.metrics.registrations.WithLabelValues("accepted").Inc()
	s.b.log.Info("backend registered", "service", p.service, "version", p.version, "pid", p.pid, "handoff", ctrl.handoffCapable)
	s.failed.clear(p.procKey)
	p.markReady(nil)
	switch {
	case p.quiesced.Load():
		// Retired while it was starting (retire.go): the Hellos that
		// waited for it are served, new ones go to its successor.
		ctrl.quiesce("retired while starting")
	case !s.routable(p):
		// The broker gave up on it before it registered (a re-adopted
		// backend later than ReadoptWait) or routes its service to
		// another process now: it takes no new clients, and it exits
		// once it has finished with the ones it has.
		p.quiesced.Store(true)
		s.b.log.Info("backend registered after it was replaced; asking it to quiesce", "service", p.service, "pid", p.pid)
		ctrl.quiesce("replaced by another backend process")
	}
	// Counted with the connections (this one holds the count above zero),
	// so Serve waits for it instead of it writing the state file, and
	// logging, after the broker stopped.
	s.b.conns.Add(1)
	go func() {
		defer s.b.conns.Done()
		s.recordExe(p)
	}()
	ctrl.readLoop()
	p.ctrl.CompareAndSwap(ctrl, nil)
	if !p.quiesced.Load() && !s.b.shutting.Load() {
		// Dropped without an Unregister: the backend died or is dying
		// (a process's sockets close before its exit is reported). No
		// further Hello goes to it, so the next one starts a new
		// backend rather than finding a dead backend_pipe.
		s.unroute(p)
	}
	s.awaitDeath(p, ctrl)
	ctrl.abandonPending("backend control connection closed")
	if !s.b.shutting.Load() {
		s.b.log.Info("backend control connection closed", "service", p.service, "pid", p.pid)
	}
	// A re-adopted backend is not our child: without an exit watch to
	// report it, check here whether it died. With one, the watch reports
	// it, so the exit is logged and counted once, by one path.
	if !p.child && p.watch == nil && !p.alive() {
		s.exited(p, s.b.log, errors.New("re-adopted backend is gone"))
	}
}

// unroute takes p out of routing: the next Hello for its service starts a
// new backend. p stays known by pid until it exits, so a backend that was
// alive after all can still re-register (and is then asked to quiesce).
func (s *supervisor) unroute(p *proc) {
	s.mu.Lock()
	if s.procs[p.procKey] == p {
		delete(s.procs, p.procKey)
	}
	s.mu.Unlock()
}

// routable reports whether Hellos for p's service go to p.
func (s *supervisor) routable(p *proc) bool {
	s.mu.Lock()
	cur := s.procs[p.procKey] == p
	s.mu.Unlock()
	return cur && p.isReady() && !p.gone.Load() && !p.quiesced.Load()
}

// deadBackendGrace bounds how long the pending handoffs of a backend whose
// control connection dropped wait for the backend's exit to be seen.
const deadBackendGrace = time.Second

// awaitDeath holds back the release of ctrl's pending handoffs until p, a
// backend that dropped its control connection without unregistering (it
// most likely died holding an offer), is known to have exited (reaped, or
// seen by its exit watch), at most deadBackendGrace. A client sees EOF
// only once the broker closes its copy of the socket, so its reconnect
// then finds the endpoint gone (the listener of a dying process can still
// take a connection it then resets), and the Hello it retries finds p gone
// and starts a new backend.
func (s *supervisor) awaitDeath(p *proc, ctrl *controlConn) {
	ctrl.mu.Lock()
	pending := len(ctrl.pending)
	ctrl.mu.Unlock()
	// A child's exit is seen by its Wait, a re-adopted backend's by its
	// exit watch; without either there is nothing to wait for.
	if pending == 0 || (!p.child && p.watch == nil) || p.quiesced.Load() || s.b.shutting.Load() {
		return
	}
	t := time.NewTimer(deadBackendGrace)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
	}
}

// verify checks that the registering process is one this broker started (or
// recorded before a restart): kernel pid, process start time and the spawn
// secret in constant time.
func (s *supervisor) verify(reg *pb.Register, cred ipc.Cred) (*proc, error) {
	if cred.PID == 0 {
		return nil, &refusal{code: pb.ErrorCode_ERROR_PEER_REJECTED, reason: "the kernel did not report the peer pid"}
	}
	lookup := func() *proc {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.byPID[cred.PID]
	}
	p := lookup()
	if p == nil {
		// Perhaps a backend whose start is still being recorded.
		s.starting.Lock()
		p = lookup()
		s.starting.Unlock()
	}
	if p == nil || p.gone.Load() {
		return nil, &refusal{code: pb.ErrorCode_ERROR_PEER_REJECTED, reason: fmt.Sprintf("pid %d was not started by this broker", cred.PID)}
	}
	if reg.GetServiceName() != p.service || reg.GetVersion() != p.version {
		return nil, &refusal{code: pb.ErrorCode_ERROR_PEER_REJECTED,
			reason: fmt.Sprintf("pid %d was started as %s@%s, not %s@%s", cred.PID, p.service, p.version, reg.GetServiceName(), reg.GetVersion())}
	}
	if st, err := ipc.ProcessStartTime(cred.PID); err != nil || st != p.startTime {
		return nil, &refusal{code: pb.ErrorCode_ERROR_PEER_REJECTED, reason: fmt.Sprintf("pid %d is not the process the broker started (start time differs)", cred.PID)}
	}
	got := sha256.Sum256(reg.GetSpawnSecret())
	if subtle.ConstantTimeCompare(got[:], p.secretHash[:]) != 1 {
		return nil, &refusal{code: pb.ErrorCode_ERROR_PEER_REJECTED, reason: "wrong spawn secret"}
	}
	if reg.GetEndpoint() != p.endpoint {
		return nil, &refusal{code: pb.ErrorCode_ERROR_PEER_REJECTED, reason: fmt.Sprintf("registered endpoint %q differs from the assigned %q", reg.GetEndpoint(), p.endpoint)}
	}
	return p, nil
}

func (s *supervisor) replyRegister(c net.Conn, req *pb.Frame, err error) error {
	rr := &pb.RegisterReply{Accepted: err == nil}
	if err != nil {
		var rf *refusal
		var v *wire.Violation
		if errors.As(err, &rf) {
			rr.Code, rr.Reason = rf.code, rf.reason
		} else if errors.As(err, &v) {
			rr.Code, rr.Reason = v.Code, v.Reason
		} else {
			rr.Code, rr.Reason = pb.ErrorCode_ERROR_INTERNAL, err.Error()
		}
	}
	f, ferr := wire.NewResponse(req, wire.ProtocolBackendControl, &pb.BackendControl{Msg: &pb.BackendControl_RegisterReply{RegisterReply: rr}})
	if ferr != nil {
		return ferr
	}
	_ = c.SetWriteDeadline(time.Now().Add(s.b.cfg.HelloTimeout))
	if werr := wire.WriteFrame(c, f); werr != nil {
		return werr
	}
	return c.SetWriteDeadline(time.Time{})
}

// janitor quiesces idle backends, prunes expired handoff state and keeps
// backend logs under their cap.
func (s *supervisor) janitor(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.retireStale(now)
			s.quiesceIdle(now)
			s.reapAdopted()
			s.capLogs()
		}
	}
}

// shutdown closes every control connection; backends keep running and
// re-register with the next broker, which finds them in the state file.
func (s *supervisor) shutdown() {
	// Hellos still waiting for a backend to start are answered now, and
	// no readopt timer fires after Serve: those of the backends no longer
	// routed to (retired while starting) included, which only byPID holds.
	s.mu.Lock()
	starting := make([]*proc, 0, len(s.procs)+len(s.byPID))
	for _, p := range s.procs {
		starting = append(starting, p)
	}
	for _, p := range s.byPID {
		starting = append(starting, p)
	}
	s.mu.Unlock()
	for _, p := range starting {
		if p.readoptTimer != nil {
			p.readoptTimer.Stop()
		}
		p.markReady(shuttingDown())
	}
	s.saveState()
	s.mu.Lock()
	var ctrls []*controlConn
	var watches []exitWatch
	for _, p := range s.byPID {
		if c := p.control(); c != nil {
			ctrls = append(ctrls, c)
		}
		if p.watch != nil {
			watches = append(watches, p.watch)
		}
	}
	s.mu.Unlock()
	if s.b.cfg.StopBackendsOnExit {
		// The exit watches of re-adopted backends are what see these exit.
		s.stopAll()
	}
	for _, w := range watches {
		w.close() // its goroutine ends before Serve returns
	}
	for _, c := range ctrls {
		c.conn.Close()
	}
}

// stopAll asks every backend to quiesce and kills those still running
// after ShutdownGrace, with the processes they started (p.kill).
func (s *supervisor) stopAll() {
	procs := s.snapshot()
	for _, p := range procs {
		if c := p.control(); c != nil {
			c.quiesce("broker stopping")
		} else {
			p.terminate()
		}
	}
	deadline := time.NewTimer(s.b.cfg.ShutdownGrace)
	defer deadline.Stop()
	for _, p := range procs {
		select {
		case <-p.exited:
		case <-deadline.C:
			for _, p := range procs {
				p.kill()
			}
			return
		}
	}
}

// snapshot lists the live processes for status and the state file.
func (s *supervisor) snapshot() []*proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*proc, 0, len(s.byPID))
	for _, p := range s.byPID {
		if !p.gone.Load() {
			out = append(out, p)
		}
	}
	return out
}

// dispatchWaiter runs a parked Hello, counted with the connections so
// Serve waits for it.
func (s *supervisor) dispatchWaiter(fn func()) {
	s.b.conns.Add(1)
	go func() {
		defer s.b.conns.Done()
		fn()
	}()
}

// capLogs keeps the output logs of running backends under LogCap. A backend
// holds its log open with O_APPEND, so the log cannot be renamed away;
// instead its newest half is copied to <log>.1 and the log is truncated in
// place (as logrotate's copytruncate does; lines written in between are
// lost).
func (s *supervisor) capLogs() {
	dir := filepath.Join(s.b.cfg.StateDir, "logs")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".log") {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.Size() > s.b.cfg.LogCap {
			copyTruncate(filepath.Join(dir, e.Name()), s.b.cfg.LogCap/2)
		}
	}
}
