package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/portier/portier/client"
	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// The load generator: one client process per measured phase (ClientMain).
//
// The client talks to the bench over stdin/stdout, one line each way, so
// the bench can read the other processes' counters exactly at the edges of
// the measured phase:
//
//	client: warm      (warm-up done, waiting)
//	bench:  go        (counters sampled)
//	client: done      (measured phase over, nothing computed yet)
//	bench:  report    (counters sampled)
//	client: {json}    (the results), then exits
const (
	lineWarm   = "warm"
	lineGo     = "go"
	lineDone   = "done"
	lineReport = "report"
)

// RTTResult is what a round-trip phase reports.
type RTTResult struct {
	N          int            `json:"n"`
	Errors     int            `json:"errors"`
	FirstError string         `json:"first_error,omitempty"`
	ElapsedNS  int64          `json:"elapsed_ns"`
	P50NS      int64          `json:"p50_ns"`
	P99NS      int64          `json:"p99_ns"`
	P999NS     int64          `json:"p999_ns"`
	MaxNS      int64          `json:"max_ns"`
	MeanNS     int64          `json:"mean_ns"`
	Routes     map[string]int `json:"routes"`
}

// StreamResult is what a streaming phase reports.
type StreamResult struct {
	Route     string `json:"route"`
	Written   int64  `json:"bytes_written"`
	Read      int64  `json:"bytes_read"`
	ElapsedNS int64  `json:"elapsed_ns"`
}

// ClientMain is the load generator's command (ClientCommand): it parses
// args, measures one phase in the mode they name, and talks to the bench on
// stdin and stdout. A bad argument is a *UsageError;
// flag.ErrHelp is returned as is.
func ClientMain(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("portier "+ClientCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", "", "broker socket")
	pipe := fs.String("pipe", "", "endpoint for the direct and proxy strategies")
	service := fs.String("service", "echo", "service to measure")
	warmService := fs.String("warm-service", "", "service for the warm-up (default: --service)")
	strategy := fs.String("strategy", stratHandoff, "direct, handoff, reconnect, fastpath, proxy, handoff+early, reconnect+early")
	mode := fs.String("mode", "rtt", "rtt, stream or hold")
	conns := fs.Int("conns", 1000, "connections to measure (hold: to open)")
	conc := fs.Int("concurrency", 1, "connections in flight at once")
	warmup := fs.Int("warmup", 200, "warm-up connections (not measured)")
	dur := fs.Duration("duration", 2*time.Second, "stream: how long to write")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &UsageError{err}
	}
	if *warmService == "" {
		*warmService = *service
	}
	d, err := newDialer(*strategy, *socket, *pipe)
	if err == nil && (*conns < 1 || *conc < 1 || *warmup < 0) {
		err = errors.New("--conns and --concurrency must be at least 1, --warmup at least 0")
	}
	if err != nil {
		return &UsageError{err}
	}
	if *strategy == stratFastpath {
		// The fast path is that of a client that has reached the service
		// once: at least one warm-up Dial fills the hello-skip cache.
		*warmup = max(*warmup, 1)
	}
	in := bufio.NewReader(stdin)
	switch *mode {
	case "rtt":
		return d.rttPhase(in, stdout, *warmService, *service, *warmup, *conns, *conc)
	case "stream":
		return d.streamPhase(in, stdout, *service, *warmup, *dur)
	case "hold":
		return holdHellos(in, stdout, *socket, *service, *conns)
	}
	return &UsageError{fmt.Errorf("unknown --mode %q", *mode)}
}

// halfCloser is a connection whose write side can be shut on its own.
type halfCloser interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// dialer opens one connection to the echo backend by one strategy, the way
// a user of each API would.
type dialer struct {
	strategy string
	socket   string
	pipe     string
	opts     []client.Option // for the broker strategies
	early    bool
	msg      [payloadSize]byte
}

func newDialer(strategy, socket, pipe string) (*dialer, error) {
	d := &dialer{strategy: strategy, socket: socket, pipe: pipe}
	copy(d.msg[:], "portier bench: one 64-byte request, echoed back by the backend.\n")
	switch strategy {
	case stratDirect, stratProxy:
		if pipe == "" {
			return nil, fmt.Errorf("strategy %s needs --pipe", strategy)
		}
		return d, nil
	// The handoff and reconnect strategies send a Hello every time
	// (NoHelloSkip): with the default options every Dial after the first
	// would take the fast path, which is its own strategy.
	case stratHandoff:
		d.opts = append(d.opts, client.NoHelloSkip())
	case stratReconnect:
		d.opts = append(d.opts, client.NoHandoff(), client.NoHelloSkip())
	case stratFastpath:
		// The default options: the hello-skip fast path.
	case stratHandoffEarly:
		d.opts = append(d.opts, client.NoHelloSkip())
		d.early = true
	case stratReconnectEarly:
		d.opts = append(d.opts, client.NoHandoff(), client.NoHelloSkip())
		d.early = true
	default:
		return nil, fmt.Errorf("unknown strategy %q", strategy)
	}
	if socket == "" {
		return nil, fmt.Errorf("strategy %s needs --socket", strategy)
	}
	d.opts = append(d.opts, client.Socket(socket))
	if d.early {
		d.opts = append(d.opts, client.EarlyData(d.msg[:]))
	}
	return d, nil
}

// dial connects to service.
func (d *dialer) dial(service string) (halfCloser, error) {
	switch d.strategy {
	case stratDirect, stratProxy:
		c, err := net.Dial("unix", d.pipe)
		if err != nil {
			return nil, err
		}
		return c.(*net.UnixConn), nil
	}
	c, err := client.Dial(context.Background(), service, d.opts...)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// route reports the route c took. Call it only after c has been read from:
// on a *client.Conn, Route settles a handoff route still open (it waits for
// the backend's ready event), which a user's first request does not do.
func (d *dialer) route(c halfCloser) string {
	if cc, ok := c.(*client.Conn); ok {
		return cc.Route().String()
	}
	return d.strategy
}

// roundTrip is one latency sample: connect, send 64 bytes (unless they
// went as early data), read the echo, close.
func (d *dialer) roundTrip(service string, buf []byte) (string, error) {
	c, err := d.dial(service)
	if err != nil {
		return "", err
	}
	if !d.early {
		if _, err := c.Write(d.msg[:]); err != nil {
			c.Close()
			return "", err
		}
	}
	if _, err := io.ReadFull(c, buf[:payloadSize]); err != nil {
		c.Close()
		return "", fmt.Errorf("read echo: %w", err)
	}
	route := d.route(c)
	if err := c.Close(); err != nil {
		return route, err
	}
	if !bytes.Equal(buf[:payloadSize], d.msg[:]) {
		return route, errors.New("echo differs from the request")
	}
	return route, nil
}

// rttRun is the workers' results of one run of connections.
type rttRun struct {
	mu       sync.Mutex
	samples  []int64
	routes   map[string]int
	errors   int
	firstErr error
}

// run makes n round trips, conc at a time, all workers released together.
func (d *dialer) run(service string, n, conc int) (*rttRun, time.Duration) {
	r := &rttRun{samples: make([]int64, 0, n), routes: map[string]int{}}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	conc = min(conc, n)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, payloadSize)
			local := make([]int64, 0, n/conc+1)
			routes := map[string]int{}
			var errs int
			var firstErr error
			<-start
			for next.Add(1) <= int64(n) {
				t0 := time.Now()
				route, err := d.roundTrip(service, buf)
				el := time.Since(t0)
				if err != nil {
					errs++
					if firstErr == nil {
						firstErr = err
					}
					continue
				}
				local = append(local, int64(el))
				routes[route]++
			}
			r.mu.Lock()
			r.samples = append(r.samples, local...)
			for k, v := range routes {
				r.routes[k] += v
			}
			r.errors += errs
			if r.firstErr == nil {
				r.firstErr = firstErr
			}
			r.mu.Unlock()
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	return r, time.Since(t0)
}

// result summarises a run's samples.
func (r *rttRun) result(elapsed time.Duration) RTTResult {
	res := RTTResult{N: len(r.samples), Errors: r.errors, ElapsedNS: int64(elapsed), Routes: r.routes}
	if r.firstErr != nil {
		res.FirstError = r.firstErr.Error()
	}
	if len(r.samples) > 0 {
		slices.Sort(r.samples)
		res.P50NS = quantile(r.samples, 0.50)
		res.P99NS = quantile(r.samples, 0.99)
		res.P999NS = quantile(r.samples, 0.999)
		res.MaxNS = r.samples[len(r.samples)-1]
		var sum int64
		for _, s := range r.samples {
			sum += s
		}
		res.MeanNS = sum / int64(len(r.samples))
	}
	return res
}

func (d *dialer) rttPhase(in *bufio.Reader, out io.Writer, warmService, service string, warmup, n, conc int) error {
	if warmup > 0 {
		if w, _ := d.run(warmService, warmup, conc); w.errors > 0 {
			return fmt.Errorf("warm-up: %d of %d connections failed, first: %w", w.errors, warmup, w.firstErr)
		}
	}
	if err := handshake(in, out, lineWarm, lineGo); err != nil {
		return err
	}
	r, el := d.run(service, n, conc)
	if err := handshake(in, out, lineDone, lineReport); err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(r.result(el))
}

// handshake prints say and waits for the bench to answer want.
func handshake(in *bufio.Reader, out io.Writer, say, want string) error {
	if _, err := fmt.Fprintln(out, say); err != nil {
		return err
	}
	l, err := in.ReadString('\n')
	if err != nil {
		return fmt.Errorf("waiting for %q: %w", want, err)
	}
	if l = string(bytes.TrimSpace([]byte(l))); l != want {
		return fmt.Errorf("bench said %q, want %q", l, want)
	}
	return nil
}

// streamPhase connects once and writes 1 MiB chunks for dur while a reader
// drains the echo; the rate is the bytes written divided by the time from
// the first write until the last echoed byte arrived.
func (d *dialer) streamPhase(in *bufio.Reader, out io.Writer, service string, warmup int, dur time.Duration) error {
	if warmup > 0 {
		if w, _ := d.run(service, warmup, 1); w.errors > 0 {
			return fmt.Errorf("warm-up: %d of %d connections failed, first: %w", w.errors, warmup, w.firstErr)
		}
	}
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i)
	}
	if err := handshake(in, out, lineWarm, lineGo); err != nil {
		return err
	}
	c, err := d.dial(service)
	if err != nil {
		return err
	}
	defer c.Close()
	readDone := make(chan error, 1)
	var read int64
	go func() {
		buf := make([]byte, 1<<20)
		for {
			n, err := c.Read(buf)
			read += int64(n)
			if err == io.EOF {
				readDone <- nil
				return
			}
			if err != nil {
				readDone <- err
				return
			}
		}
	}()
	t0 := time.Now()
	end := t0.Add(dur)
	var written int64
	var werr error
	for time.Now().Before(end) {
		n, err := c.Write(chunk)
		written += int64(n)
		if err != nil {
			werr = err
			break
		}
	}
	if werr == nil {
		werr = c.CloseWrite()
	}
	rerr := <-readDone
	el := time.Since(t0)
	route := d.route(c)
	if err := handshake(in, out, lineDone, lineReport); err != nil {
		return err
	}
	if werr != nil || rerr != nil {
		return fmt.Errorf("stream (route %s): write: %v, read: %v", route, werr, rerr)
	}
	if read != written {
		return fmt.Errorf("stream (route %s): wrote %d bytes, %d came back", route, written, read)
	}
	return json.NewEncoder(out).Encode(StreamResult{Route: route, Written: written, Read: read, ElapsedNS: int64(el)})
}

// holdHellos opens n connections to the broker, writes a Hello for service
// on each and keeps them open, unanswered or not, until stdin closes. It
// uses raw frames rather than client.Dial so that nothing times out while
// the bench samples the broker.
func holdHellos(in *bufio.Reader, out io.Writer, socket, service string, n int) error {
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range n {
		c, err := dialRetry(socket)
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		conns = append(conns, c)
		h := &pb.Hello{
			ClientMinProtocol:  wire.ProtocolVersion,
			ClientMaxProtocol:  wire.ProtocolVersion,
			ServiceName:        service,
			WantedVersion:      wire.AnyVersion, // whatever the definition names (v1 requires a version)
			ClientCapabilities: wire.CapHandlePassing | wire.CapAnyVersion,
			RequestId:          "bench-hold-" + strconv.Itoa(os.Getpid()) + "-" + strconv.Itoa(i),
			PeerPid:            uint32(os.Getpid()),
			ClientLibName:      "portier-bench",
		}
		f, err := wire.NewRequest(wire.ProtocolControl, uint64(i+1), h)
		if err != nil {
			return err
		}
		if err := wire.WriteFrame(c, f); err != nil {
			return fmt.Errorf("connection %d: write hello: %w", i, err)
		}
	}
	if _, err := fmt.Fprintln(out, "held", len(conns)); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, in) // until the bench closes stdin
	return nil
}

// dialRetry dials a Unix socket, retrying while its accept backlog is full
// (Go reports EAGAIN for a non-blocking connect to a full backlog).
func dialRetry(path string) (net.Conn, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("unix", path)
		if err == nil || !errors.Is(err, syscall.EAGAIN) || time.Now().After(deadline) {
			return c, err
		}
		time.Sleep(time.Millisecond)
	}
}
