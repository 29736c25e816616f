package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portier/portier/handoff"
	"github.com/portier/portier/internal/ipc"
	"github.com/portier/portier/servicedef"
)

// Config configures a Broker. Zero values take the documented defaults.
type Config struct {
	// Socket is the broker endpoint: on Unix a socket path whose directory
	// must be private (0700, owned by the user, not a symlink; it is
	// created if missing), on Windows a named pipe (\\.\pipe\...).
	Socket string
	// ServicesDir holds one <name>.toml per service.
	ServicesDir string
	// StateDir holds the state file and backend logs (default: the
	// socket's directory on Unix, %LocalAppData%\portier on Windows).
	StateDir string
	// Logger receives the broker's logs (default slog.Default()).
	Logger *slog.Logger
	// HelloTimeout bounds the read of a connection's first frame (default 5 s).
	HelloTimeout time.Duration
	// FirstByteTimeout bounds the wait for the first frame's 5-byte header
	// (default 1 s): a connection that sends nothing is closed then.
	FirstByteTimeout time.Duration
	// MaxHelloConns bounds the connections whose first frame's body is
	// being read at once (default 512); connections still waiting for
	// their first bytes take none of these slots.
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
	// Listener, when set (Unix only), is a listening socket someone else
	// bound, such as one systemd hands over by socket activation; Serve serves it instead
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
		c.StateDir = defaultStateDir(c.Socket)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.HelloTimeout <= 0 {
		c.HelloTimeout = 5 * time.Second
	}
	if c.FirstByteTimeout <= 0 {
		c.FirstByteTimeout = time.Second
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
	work     chan acceptedConn
	idleStop chan struct{}

	hangups   hangupWatch   // parked Hellos' sockets; nil where the platform has none
	listening chan struct{} // closed once the socket is bound
	inflight  flightGroup   // handoffs between Negotiated and their outcome
	reserve   fdReserve     // see acceptLoop (Unix)
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
		work:       make(chan acceptedConn),
		idleStop:   make(chan struct{}),
		listening:  make(chan struct{}),
		started:    time.Now(),
	}
	// The definition is looked at no more often than the program it
	// names (exeCheckEvery): a busy service costs at most a thousand pairs
	// of stats a second instead of two per Hello, and an edit is seen by
	// every Hello a millisecond after it, as a rebuild is.
	b.defs.CacheFor(exeCheckEvery)
	b.metrics = newMetrics(b)
	b.sup = newSupervisor(b)
	return b, nil
}

// Listening is closed once Serve has bound the socket, so an embedding
// program (the demo, tests) can connect without polling.
func (b *Broker) Listening() <-chan struct{} { return b.listening }

// Serve binds the socket (singleton), or adopts Config.Listener, re-adopts
// backends recorded by a previous broker and serves until ctx is done. Then it stops accepting
// (answering the clients queued on the socket first), answers Hellos already read with SHUTTING_DOWN, waits for in-flight
// handoffs (at most ShutdownGrace) and returns nil, leaving backends running
// for the next broker. A live broker on the socket yields ErrAlreadyRunning.
func (b *Broker) Serve(ctx context.Context) error {
	if err := ensureStateDir(b.cfg.StateDir); err != nil {
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
	if w, err := newHangupWatch(); err == nil {
		b.hangups = w
		b.conns.Add(1)
		go func() { defer b.conns.Done(); w.run() }()
	} else if !errors.Is(err, errNoHangupWatch) {
		b.log.Warn("parked Hellos are not watched for clients that leave", "err", err)
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
	b.drainQueued(ln)
	ln.Close()
	<-acceptDone
	close(b.idleStop) // idle connection workers exit; busy ones finish first
	b.inflight.wait(b.cfg.ShutdownGrace)
	stopJanitor()
	<-janitorDone
	b.sup.shutdown() // answers every parked Hello
	if b.hangups != nil {
		b.hangups.close()
	}
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

// drainQueuedWait bounds how long a stopping broker waits for its accept
// loop to take the clients queued on its endpoint.
const drainQueuedWait = time.Second

// drainQueued answers the clients queued on the endpoint when the broker
// stops. Closing the listener with clients queued resets them, and a
// client reset before any reply cannot tell a stopping broker from a
// broken one. So no client can join the queue first (on Unix the socket
// file goes; on Windows the pipe instances nobody connected to are
// closed), and the accept loop, still running, takes the queued clients,
// whose Hellos are answered SHUTTING_DOWN with a retry delay. Under socket
// activation the queue is the service manager's, kept for the next broker:
// nothing to do.
func (b *Broker) drainQueued(ln *ipc.Listener) {
	stopped, err := ln.StopNewClients()
	if err != nil {
		b.log.Warn("stopping: cannot stop new clients; clients queued may be reset", "err", err)
	}
	if !stopped {
		return
	}
	deadline := time.Now().Add(drainQueuedWait)
	for time.Now().Before(deadline) {
		if pending, err := ln.Pending(); err != nil || !pending {
			return
		}
		time.Sleep(time.Millisecond)
	}
	b.log.Warn("stopping: clients still queued after waiting; they are reset", "waited", drainQueuedWait)
}
