//go:build unix

package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/portier/portier/handoff"
	"github.com/portier/portier/internal/ipc"
	"github.com/portier/portier/servicedef"
)

// Config configures a Broker. Zero values take the documented defaults.
type Config struct {
	// Socket is the broker endpoint. Its directory must be private (0700,
	// owned by the user, not a symlink); it is created if missing.
	Socket string
	// ServicesDir holds one <name>.toml per service.
	ServicesDir string
	// StateDir holds the state file and backend logs (default: the socket's
	// directory).
	StateDir string
	// Logger receives the broker's logs (default slog.Default()).
	Logger *slog.Logger
	// HelloTimeout bounds the read of a connection's first frame (default 5 s).
	HelloTimeout time.Duration
	// MaxHelloConns bounds connections in the Hello stage (default 512).
	MaxHelloConns int
	// Handoff configures tokens, ACK deadlines, the in-flight bound and the
	// failed-attempt window.
	Handoff handoff.Config
	// SpawnFailures failed starts within SpawnWindow exhaust a service
	// version's spawn budget (defaults 3 per 30 s).
	SpawnFailures int
	SpawnWindow   time.Duration
	// ShutdownGrace bounds how long shutdown waits for in-flight handoffs
	// (default 5 s).
	ShutdownGrace time.Duration
	// LogCap caps each backend's output log (default 1 MiB).
	LogCap int64
	// StopBackendsOnExit makes shutdown stop the backends too (quiesce, then
	// SIGKILL to the process group after ShutdownGrace) instead of leaving
	// them for the next broker; for embedded brokers such as the demo's.
	StopBackendsOnExit bool
	// ReadoptWait bounds how long a Hello waits for a backend recorded by a
	// previous broker to re-register before a new one is started (default 2 s).
	ReadoptWait time.Duration
	// Listener, when set, is a listening socket someone else bound, such as
	// one systemd hands over by socket activation; Serve serves it instead
	// of binding Socket. Its directory must be private, as Socket's must;
	// Serve takes the singleton lock beside it, owns the listener from then
	// on, and never removes the socket file, which belongs to whoever bound
	// it. Socket may be empty (it is taken from the listener) or must name
	// the same path.
	Listener *net.UnixListener
	// OnReady, when set, is called once the broker accepts connections;
	// `portier serve` sends systemd's READY=1 from it.
	OnReady func()
	// OnStopping, when set, is called when the broker begins to shut down;
	// `portier serve` sends systemd's STOPPING=1 from it.
	OnStopping func()
}

func (c *Config) setDefaults() {
	if c.StateDir == "" {
		c.StateDir = filepath.Dir(c.Socket)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.HelloTimeout <= 0 {
		c.HelloTimeout = 5 * time.Second
	}
	if c.MaxHelloConns <= 0 {
		c.MaxHelloConns = 512
	}
	if c.SpawnFailures <= 0 {
		c.SpawnFailures = 3
	}
	if c.SpawnWindow <= 0 {
		c.SpawnWindow = 30 * time.Second
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 5 * time.Second
	}
	if c.LogCap <= 0 {
		c.LogCap = 1 << 20
	}
	if c.ReadoptWait <= 0 {
		c.ReadoptWait = 2 * time.Second
	}
}

// ErrAlreadyRunning: another live broker serves the socket.
var ErrAlreadyRunning = ipc.ErrAlreadyRunning

// Broker is the portier daemon.
type Broker struct {
	cfg     Config
	log     *slog.Logger
	peers   *ipc.PeerGuard // admits peers of the broker's real uid
	defs    *servicedef.Registry
	orch    *handoff.Orchestrator
	sup     *supervisor
	metrics *metrics
	started time.Time

	connIDs    atomic.Uint64
	helloSlots chan struct{}
	shutting   atomic.Bool
	fdPressure atomic.Bool

	conns    sync.WaitGroup // connection workers and other per-connection goroutines
	work     chan *net.UnixConn
	idleStop chan struct{}

	listening chan struct{} // closed once the socket is bound
	inflight  flightGroup   // handoffs between Negotiated and their outcome
	reserve   fdReserve     // see acceptLoop
}

// flightGroup counts the handoffs in flight. It is not a sync.WaitGroup
// because a Hello read before shutdown may begin its handoff (Add from zero)
// while Serve already waits for the count to drain, which WaitGroup forbids
// (the race detector reports it, and a race-enabled broker exits 66).
type flightGroup struct {
	mu    sync.Mutex
	n     int
	drain []chan struct{} // closed when n drops to zero
}

func (g *flightGroup) Add(delta int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n += delta
	if g.n == 0 {
		for _, c := range g.drain {
			close(c)
		}
		g.drain = nil
	}
}

func (g *flightGroup) Done() { g.Add(-1) }

// wait waits until nothing is in flight or d passes; it reports whether
// the count drained.
func (g *flightGroup) wait(d time.Duration) bool {
	g.mu.Lock()
	if g.n == 0 {
		g.mu.Unlock()
		return true
	}
	c := make(chan struct{})
	g.drain = append(g.drain, c)
	g.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c:
		return true
	case <-t.C:
		return false
	}
}

// New validates cfg and builds a broker; Serve starts it.
func New(cfg Config) (*Broker, error) {
	if err := cfg.socketFromListener(); err != nil {
		return nil, err
	}
	if cfg.Socket == "" {
		return nil, errors.New("broker: Config.Socket is empty")
	}
	if cfg.ServicesDir == "" {
		return nil, errors.New("broker: Config.ServicesDir is empty")
	}
	cfg.setDefaults()
	b := &Broker{
		cfg:        cfg,
		log:        cfg.Logger,
		peers:      ipc.NewPeerGuard(cfg.Logger),
		defs:       servicedef.NewRegistry(cfg.ServicesDir, cfg.Logger),
		orch:       handoff.NewOrchestrator(cfg.Handoff),
		helloSlots: make(chan struct{}, cfg.MaxHelloConns),
		work:       make(chan *net.UnixConn),
		idleStop:   make(chan struct{}),
		listening:  make(chan struct{}),
		started:    time.Now(),
	}
	b.metrics = newMetrics(b)
	b.sup = newSupervisor(b)
	return b, nil
}

// Listening is closed once Serve has bound the socket, so an embedding
// program (the demo, tests) can connect without polling.
func (b *Broker) Listening() <-chan struct{} { return b.listening }

// Serve binds the socket (singleton), or adopts Config.Listener, re-adopts
// backends recorded by a previous broker and serves until ctx is done. Then it stops accepting,
// answers Hellos already read with SHUTTING_DOWN, waits for in-flight
// handoffs (at most ShutdownGrace) and returns nil, leaving backends running
// for the next broker. A live broker on the socket yields ErrAlreadyRunning.
func (b *Broker) Serve(ctx context.Context) error {
	if err := ipc.EnsurePrivateDir(b.cfg.StateDir); err != nil {
		if b.cfg.Listener != nil {
			b.cfg.Listener.Close() // Serve owns it, as documented
		}
		return fmt.Errorf("broker: state directory: %w", err)
	}
	ln, err := b.listen()
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	b.log.Info("broker listening", "socket", b.cfg.Socket, "services", b.cfg.ServicesDir, "pid", os.Getpid())
	close(b.listening)
	if _, err := os.Stat(b.cfg.ServicesDir); errors.Is(err, os.ErrNotExist) {
		b.log.Warn("services directory does not exist; every Hello is SERVICE_UNKNOWN until it holds <name>.toml definitions",
			"services", b.cfg.ServicesDir)
	}
	b.sup.loadState()
	janitorDone := make(chan struct{})
	jctx, stopJanitor := context.WithCancel(context.Background())
	go func() { defer close(janitorDone); b.sup.janitor(jctx) }()

	acceptDone := make(chan struct{})
	go func() { defer close(acceptDone); b.acceptLoop(ln) }()
	if b.cfg.OnReady != nil {
		b.cfg.OnReady()
	}
	<-ctx.Done()

	if b.cfg.OnStopping != nil {
		b.cfg.OnStopping()
	}
	b.shutting.Store(true)
	b.log.Info("broker shutting down")
	ln.Close()
	<-acceptDone
	close(b.idleStop) // idle connection workers exit; busy ones finish first
	b.inflight.wait(b.cfg.ShutdownGrace)
	stopJanitor()
	<-janitorDone
	b.sup.shutdown()
	waitTimeout(&b.conns, b.cfg.ShutdownGrace)
	b.reserve.close() // after the pressured connections, which take it back
	if b.cfg.StopBackendsOnExit {
		// Every backend is gone, so every reaper finishes. Otherwise the
		// reapers of backends left running end with the process.
		waitTimeout(&b.sup.workers, b.cfg.ShutdownGrace)
	}
	b.log.Info("broker stopped")
	return nil
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// fdReserve is one descriptor the broker holds back, so that it can still
// accept a connection (and tell it FD_PRESSURE, or serve an admin request)
// when accept fails for lack of descriptors.
type fdReserve struct {
	mu     sync.Mutex
	f      *os.File
	closed bool
	none   bool // the null device cannot be opened at all: no reserve
}

// take holds the reserve again if it is out. It reports false only while
// it is out and cannot be taken back for lack of descriptors.
func (r *fdReserve) take() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f != nil || r.closed || r.none {
		return true
	}
	f, err := os.Open(os.DevNull)
	switch {
	case err == nil:
		r.f = f
	case errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE):
		return false
	default:
		// Not for lack of descriptors, so waiting does not help: the
		// broker goes on without a reserve (and without FD_PRESSURE
		// answers).
		r.none = true
	}
	return true
}

// spend frees the reserve's descriptor for the caller's next accept. It
// reports false when there is none to free.
func (r *fdReserve) spend() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return false
	}
	r.f.Close()
	r.f = nil
	return true
}

// close releases the reserve for good.
func (r *fdReserve) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

// acceptLoop accepts until the listener closes. When accept fails for lack
// of descriptors, acceptPressured spends the reserve descriptor on the next
// connection, whose first frame a goroutine of its own reads and answers:
// a Hello with FD_PRESSURE, an admin request as usual (see serveConn). The
// pressure flag (which also turns handoffs into reconnects) stays until
// accepts succeed again.
//
// Nothing is accepted while the reserve is out. The descriptor that frees
// next (usually the pressured connection's own, which its goroutine takes
// back the moment it has closed it) must become the reserve again, not the
// next connection's: otherwise, in a burst, the accept loop takes every
// freed descriptor, the answers alternate between FD_PRESSURE and
// Negotiated until the reserve is gone, and the next squeeze leaves clients
// waiting without an answer. The pause lasts while no descriptor at all is
// free, when accept would fail anyway.
func (b *Broker) acceptLoop(ln *ipc.Listener) {
	for {
		if !b.reserve.take() {
			if b.shutting.Load() {
				return // Serve has closed the listener
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		c, err := ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				if !b.fdPressure.Swap(true) {
					b.log.Warn("out of file descriptors; answering Hellos with FD_PRESSURE", "err", err)
				}
				b.metrics.fdPressure.Inc()
				if !b.acceptPressured(ln) {
					return
				}
				continue
			}
			b.log.Warn("accept failed", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if b.fdPressure.Swap(false) {
			b.log.Info("file descriptors available again")
		}
		b.dispatch(c)
	}
}

// acceptPressured handles an accept that failed for lack of descriptors.
// accept fails so whether or not a connection is queued (the descriptor is
// allocated first), so it waits for one before it frees the reserve: a
// reserve freed early is a free descriptor anyone in the process may take
// meanwhile. Then it tries a plain accept once more (descriptors may have
// freed while it waited), and only if that fails too it spends the reserve
// on the connection and answers it on a goroutine of its own. It reports
// false once the listener is closed.
func (b *Broker) acceptPressured(ln *ipc.Listener) bool {
	if err := ln.WaitPending(); err != nil {
		if errors.Is(err, net.ErrClosed) {
			return false
		}
		b.log.Warn("waiting for a connection failed", "err", err)
		time.Sleep(10 * time.Millisecond)
		return true
	}
	c, err := ln.AcceptUnix()
	if err == nil {
		if b.fdPressure.Swap(false) {
			b.log.Info("file descriptors available again")
		}
		b.dispatch(c)
		return true
	}
	if !errors.Is(err, syscall.EMFILE) && !errors.Is(err, syscall.ENFILE) {
		return !errors.Is(err, net.ErrClosed)
	}
	if !b.reserve.spend() {
		// No reserve on this system: let descriptors free up rather than
		// spin.
		time.Sleep(10 * time.Millisecond)
		return true
	}
	c, err = ln.AcceptUnix()
	if err != nil {
		// Someone else took the freed descriptor; the accept loop waits
		// for the reserve to come back.
		return !errors.Is(err, net.ErrClosed)
	}
	b.conns.Add(1)
	go func() {
		defer b.conns.Done()
		b.serveConn(c, true)
		b.reserve.take()
	}()
	return true
}
