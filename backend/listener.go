package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portier/portier/internal/ipc"
	"github.com/portier/portier/internal/spawnenv"
	"github.com/portier/portier/wire"
)

// Defaults of a Listener.
const (
	DefaultQueueSize       = 128
	DefaultRegisterTimeout = 5 * time.Second
	// ioTimeout bounds every write on the control connection and every
	// ready-event write that could not complete at once.
	ioTimeout = 5 * time.Second
	// Re-registration backoff after the broker went away: short enough that a
	// restarted broker sees its backends again well within a second.
	minBackoff = 10 * time.Millisecond
	maxBackoff = 200 * time.Millisecond
)

// Errors returned by Listen and Accept.
var (
	// ErrNoAddress: neither the broker environment nor the Address option
	// says where to listen.
	ErrNoAddress = errors.New("backend: no broker environment (PORTIER_BROKER) and no Address option: nowhere to listen")
	// ErrBadEnvironment: the broker environment is incomplete or malformed.
	ErrBadEnvironment = errors.New("backend: malformed broker environment")
	// ErrRegistrationRefused matches *RegistrationError.
	ErrRegistrationRefused = errors.New("backend: broker refused the registration")
)

// RegistrationError is the broker's refusal of a registration, for example
// because this process is not the one the broker started.
type RegistrationError struct {
	Code   wire.ErrorCode
	Reason string
}

func (e *RegistrationError) Error() string {
	return fmt.Sprintf("backend: broker refused registration (%s): %s", e.Code, e.Reason)
}

// Is matches ErrRegistrationRefused.
func (e *RegistrationError) Is(target error) bool { return target == ErrRegistrationRefused }

// Option configures Listen.
type Option func(*options)

type options struct {
	address         string
	logger          *slog.Logger
	queue           int
	handoff         bool
	noZeroRTT       bool
	registerTimeout time.Duration
	orphanTimeout   time.Duration
}

// Address sets the endpoint to listen on when the program runs without a
// broker. Under a broker the broker's PORTIER_BACKEND_ENDPOINT wins.
func Address(path string) Option { return func(o *options) { o.address = path } }

// Logger sets the logger (default slog.Default()).
func Logger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// QueueSize bounds the handed-off connections waiting for Accept (default
// 128). Over the bound the backend rejects offers, and those clients take the
// reconnect route, so a slow Accept caller never stalls the control
// connection.
func QueueSize(n int) Option { return func(o *options) { o.queue = n } }

// NoHandoff registers without the handoff capability: every client reaches
// this backend through its own endpoint.
func NoHandoff() Option { return func(o *options) { o.handoff = false } }

// NoZeroRTT registers without taking 0-RTT offers. By default a backend
// that takes handoffs also takes them: for a client that announced it
// (CAP_PORTIER_0RTT), the broker writes nothing and the backend writes
// Negotiated together with the handoff-ready event, saving the client a
// wakeup. Without, the broker writes Negotiated itself before each offer,
// as for every other client. It exists to compare the two and to test a
// broker against backends that predate 0-RTT.
func NoZeroRTT() Option { return func(o *options) { o.noZeroRTT = true } }

// DefaultOrphanTimeout is how long a backend whose broker went away keeps
// trying to re-register before it closes its listener.
const DefaultOrphanTimeout = 10 * time.Minute

// OrphanTimeout sets how long the listener keeps re-registering after its
// broker went away (default 10 minutes, the default idle timeout) before it
// closes, so that a backend whose broker never comes back exits instead of
// retrying forever. A restarted broker normally re-adopts it within a second.
func OrphanTimeout(d time.Duration) Option { return func(o *options) { o.orphanTimeout = d } }

// RegisterTimeout bounds the first registration with the broker (default
// 5 s, also bounded by Listen's context).
func RegisterTimeout(d time.Duration) Option { return func(o *options) { o.registerTimeout = d } }

// Listener yields handed-off and direct connections alike. It implements
// net.Listener.
type Listener struct {
	opts options
	log  *slog.Logger
	env  *spawnenv.Env // what the broker told this process; nil when standalone
	// peers admits direct connections from this process's real user only
	// (logging refusals, rate-limited).
	peers *ipc.PeerGuard
	ln    net.Listener

	handoffs chan net.Conn // capacity opts.queue; never blocks a sender
	direct   chan net.Conn
	reserved atomic.Int64 // handoff slots taken, <= opts.queue
	// late holds direct connections accepted while the listener stopped
	// (drainEndpoint), for Accept to return after the handed-off ones.
	lateMu     sync.Mutex
	late       []net.Conn
	acceptDone chan struct{} // closed when acceptLoop returned

	done      chan struct{}
	closeOnce sync.Once
	finished  chan struct{} // closed when stop has done everything
	closeErr  error         // of closing the endpoint, set before finished
	// life is canceled by Close, so that a re-registration waiting on a
	// silent broker ends with it instead of holding Close up.
	life    context.Context
	endLife context.CancelFunc
	wg      sync.WaitGroup

	mu   sync.Mutex
	ctrl *control // current control connection, nil between brokers

	// Live connections (conn.go): counted from the moment the listener
	// has one until its Conn is closed.
	live    atomic.Int64
	kick    chan struct{} // capacity 1: a report to send (reportLoop)
	drainMu sync.Mutex
	drained chan struct{} // closed when live drops to 0 while Shutdown waits
}

// Listen starts a backend listener. Under a broker it returns once the broker
// accepted the registration (bounded by ctx and RegisterTimeout); standalone
// it returns once the Address endpoint is bound.
//
// Under a broker, Listen removes PORTIER_SPAWN_SECRET from the process
// environment as it reads it, so that programs the backend starts do not
// inherit the secret; the listener keeps its own copy for re-registrations.
// A process the broker started therefore calls Listen once.
func Listen(ctx context.Context, opts ...Option) (*Listener, error) {
	o := options{logger: slog.Default(), queue: DefaultQueueSize, handoff: handoffSupported, registerTimeout: DefaultRegisterTimeout, orphanTimeout: DefaultOrphanTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if o.queue <= 0 {
		o.queue = DefaultQueueSize
	}
	if o.orphanTimeout <= 0 {
		o.orphanTimeout = DefaultOrphanTimeout
	}
	// The spawn secret leaves the environment here, valid or not, so that
	// programs this backend starts do not inherit it.
	env, err := spawnenv.FromProcess()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadEnvironment, err)
	}
	l := &Listener{
		opts:       o,
		log:        o.logger,
		env:        env,
		handoffs:   make(chan net.Conn, o.queue),
		direct:     make(chan net.Conn),
		done:       make(chan struct{}),
		finished:   make(chan struct{}),
		acceptDone: make(chan struct{}),
		kick:       make(chan struct{}, 1),
	}
	l.life, l.endLife = context.WithCancel(context.Background())
	addr := o.address
	if env != nil {
		addr = env.Endpoint
		l.log = l.log.With("service", env.Service, "version", env.Version)
	}
	if addr == "" {
		l.endLife()
		return nil, ErrNoAddress
	}
	l.peers = ipc.NewPeerGuard(l.log)
	if l.ln, err = listenEndpoint(addr); err != nil {
		l.endLife()
		return nil, fmt.Errorf("backend: listen on %s: %w", addr, err)
	}
	var first *control
	if env != nil {
		rctx, cancel := context.WithTimeout(ctx, o.registerTimeout)
		first, err = l.register(rctx)
		cancel()
		if err != nil {
			l.endLife()
			l.ln.Close()
			return nil, err
		}
		l.wg.Add(2)
		go l.controlLoop(first)
		go l.reportLoop()
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

var _ net.Listener = (*Listener)(nil)

// Accept returns the next handed-off or direct connection, a *Conn. Once
// the listener is stopped (Close, Shutdown, or the broker asking this
// backend to quiesce) it returns the handed-off connections still waiting
// (unless Close closed them), then an error matching net.ErrClosed, and
// only once the stop has finished: a program that exits when Accept fails
// has then unregistered and removed its endpoint. Call Shutdown before
// exiting to let the connections in progress finish.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.handoffs:
		l.reserved.Add(-1)
		return c, nil
	default:
	}
	select {
	case c := <-l.handoffs:
		l.reserved.Add(-1)
		return c, nil
	case c := <-l.direct:
		return c, nil
	case <-l.done:
		<-l.finished // bounded: every wait in stop has a deadline
		// Nothing is queued after the stop finished: a connection still
		// here was handed off (its client adopted it) before, or had
		// connected to the endpoint before it was removed.
		select {
		case c := <-l.handoffs:
			l.reserved.Add(-1)
			return c, nil
		default:
		}
		if c := l.takeLate(); c != nil {
			return c, nil
		}
		return nil, &net.OpError{Op: "accept", Net: l.ln.Addr().Network(), Addr: l.ln.Addr(), Err: net.ErrClosed}
	}
}

// takeLate returns the next direct connection drained while stopping, nil
// when there is none.
func (l *Listener) takeLate() net.Conn {
	l.lateMu.Lock()
	defer l.lateMu.Unlock()
	if len(l.late) == 0 {
		return nil
	}
	c := l.late[0]
	l.late = l.late[1:]
	return c
}

// Addr is the backend's own endpoint (backend_pipe).
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Close stops accepting, unregisters from the broker and closes every
// connection (handed off, or direct and accepted while stopping) that
// Accept has not returned yet. Connections already returned by Accept are
// the caller's (Shutdown waits for them).
func (l *Listener) Close() error {
	err := l.stop()
	for c := l.takeLate(); c != nil; c = l.takeLate() {
		c.Close()
	}
	for {
		select {
		case conn := <-l.handoffs:
			l.reserved.Add(-1)
			conn.Close()
		default:
			return err
		}
	}
}

// stop stops accepting (the endpoint is closed and removed, offers are
// rejected) and unregisters from the broker, once; every call returns
// after the first has finished. Handed-off connections waiting for Accept
// stay there: Close closes them, a graceful stop (a quiesce, Shutdown)
// leaves them to Accept.
func (l *Listener) stop() error {
	l.closeOnce.Do(func() {
		defer close(l.finished)
		close(l.done)
		l.endLife()
		l.closeErr = l.closeEndpoint()
		// controlLoop publishes a connection only while l is open (checked
		// under mu), so either it is seen here or controlLoop closes it.
		l.mu.Lock()
		c := l.ctrl
		l.mu.Unlock()
		if c != nil {
			c.unregister()
		}
		l.wg.Wait()
	})
	<-l.finished
	return l.closeErr
}

// drainable is an endpoint whose name can be removed while its socket still
// accepts (a Unix socket; a named pipe cannot).
type drainable interface {
	StopNewClients() (bool, error)
	SetDeadline(time.Time) error
	AcceptQueued() ([]*net.UnixConn, error)
}

// closeEndpoint stops direct connections. Where the endpoint is drainable
// it first removes its name, so no client can connect any more (a client
// then gets ENOENT and asks the broker, which no longer routes here), then
// ends the accept loop's wait, accepts what had already connected, and
// only then closes the socket: a client whose connect succeeded, a
// hello-skip client above all, is served rather than reset. Elsewhere it
// closes at once.
func (l *Listener) closeEndpoint() error {
	if d, ok := l.ln.(drainable); ok {
		if _, err := d.StopNewClients(); err != nil {
			l.log.Warn("could not remove the endpoint before closing it", "err", err)
		}
		if d.SetDeadline(time.Unix(1, 0)) == nil {
			<-l.acceptDone
			queued, err := d.AcceptQueued()
			if err != nil {
				l.log.Warn("could not accept every connection queued on the endpoint", "err", err)
			}
			for _, c := range queued {
				if _, ok := l.peers.Admit(c); !ok {
					c.Close()
					continue
				}
				l.keepLate(l.track(c))
			}
		}
	}
	return l.ln.Close()
}

func (l *Listener) closed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// acceptLoop feeds direct (reconnect-route and hello-skip) connections, from
// the user's own uid only, to Accept.
func (l *Listener) acceptLoop() {
	defer l.wg.Done()
	defer close(l.acceptDone)
	delay := time.Duration(0)
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.closed() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Most likely EMFILE: back off instead of spinning.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.log.Warn("backend accept failed", "err", err, "retry_in", delay)
			if !l.sleep(delay) {
				return
			}
			continue
		}
		delay = 0
		if _, ok := l.peers.Admit(c); !ok {
			c.Close()
			continue
		}
		tc := l.track(c)
		if l.closed() {
			l.keepLate(tc)
			continue
		}
		select {
		case l.direct <- tc:
		case <-l.done:
			// Stopping: the endpoint is being drained (closeEndpoint).
			l.keepLate(tc)
		}
	}
}

// keepLate queues a direct connection accepted while stopping for Accept.
func (l *Listener) keepLate(c net.Conn) {
	l.lateMu.Lock()
	l.late = append(l.late, c)
	l.lateMu.Unlock()
}

// sleep waits d or until Close; it reports false after Close.
func (l *Listener) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.done:
		return false
	}
}

// String describes the listener for logs.
func (l *Listener) String() string {
	if l.env == nil {
		return "backend(standalone " + l.ln.Addr().String() + ")"
	}
	return "backend(" + l.env.Service + "@" + l.env.Version + " pid " + strconv.Itoa(os.Getpid()) + ")"
}
