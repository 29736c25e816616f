package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/portier/portier/client"
)

func init() {
	register(command{name: "dial", summary: "bridge stdin/stdout to a brokered connection", run: dialCmd, synopsis: "SERVICE [flags]",
		help: "Connect to SERVICE through the broker, as client.Dial does, and copy stdin to the connection and the\n" +
			"connection to stdout until the backend closes it; the end of stdin half-closes the connection. A\n" +
			"named pipe (Windows) cannot be half-closed: there dial stops once stdin has ended and the backend\n" +
			"has been silent for --eof-wait. With --auto-start it starts the broker when none runs (its log:\n" +
			"broker.log beside the socket, or in %LocalAppData%\\portier\\<pipe name> on Windows). Exits 1\n" +
			"when the connection was cut: reset, or closed by the backend before the end of stdin.",
		example: "echo hello | portier dial echo -v\nportier dial echo --auto-start --version 1.0.0"})
}

// dialStdin is what dial bridges to the connection: os.Stdin, or a pipe in
// tests (commands get stdout and stderr but not stdin).
var dialStdin io.Reader = os.Stdin

func dialCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("dial", stderr)
	version := fs.String("version", "", "wanted version (default: the one the definition names)")
	socket := fs.String("socket", defaultSocket(), "broker socket (env PORTIER_SOCKET)")
	noHandoff := fs.Bool("no-handoff", false, "take the reconnect route")
	verbose := fs.Bool("v", false, "print the route to stderr")
	autoStart := fs.Bool("auto-start", false, "start the broker (this executable's 'serve') when none answers, as client.AutoStart does")
	timeout := fs.Duration("timeout", client.DefaultHandshakeTimeout, "bound on the broker's answer, which may wait for the backend to start (the route then settles within the client's ready and handshake timeouts)")
	eofWait := fs.Duration("eof-wait", defaultEOFWait, "where the connection cannot be half-closed (Windows named pipes): after stdin ends, keep printing the backend's output until it has been silent this long, then close")
	// Allow flags after the service name too.
	var service string
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		service, args = args[0], args[1:]
	}
	maxArgs := 1
	if service != "" {
		maxArgs = 0
	}
	if code, ok := parseArgs(fs, args, maxArgs); !ok {
		return code
	}
	if !needSocket("dial", *socket, stderr) {
		return exitUsage
	}
	if service == "" && fs.NArg() > 0 {
		service = fs.Arg(0)
	}
	if service == "" {
		fs.Usage()
		return exitUsage
	}
	// One Dial per process: the hello-skip cache could not help, and -v
	// reports the route the broker gave.
	opts := []client.Option{client.Version(*version), client.Socket(*socket), client.NoHelloSkip()}
	if *noHandoff {
		opts = append(opts, client.NoHandoff())
	}
	if *autoStart {
		opts = append(opts, client.AutoStart(client.AutoStartConfig{}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	c, err := client.Dial(ctx, service, opts...)
	cancel()
	if err != nil {
		fmt.Fprintln(stderr, "portier dial:", err)
		return exitFailure
	}
	if *verbose {
		fmt.Fprintf(stderr, "portier dial: %s@%s route=%s connection=%d\n", service, c.DaemonVersion(), c.Route(), c.ConnectionID())
	}
	if err := bridge(c, dialStdin, stdout, *eofWait); err != nil {
		fmt.Fprintln(stderr, "portier dial:", err)
		return exitFailure
	}
	return exitOK
}

// defaultEOFWait is how long dial keeps reading after stdin ended when it
// cannot tell the backend so (no half-close): long enough for a local
// backend's answer to a request it already has, short enough for a script.
const defaultEOFWait = 2 * time.Second

// halfCloser is a connection whose write side can be shut on its own, or
// that says it cannot (CloseWrite fails with errors.ErrUnsupported).
type halfCloser interface {
	io.ReadWriteCloser
	CloseWrite() error
	SetReadDeadline(time.Time) error
}

// cutGrace is how long bridge, once the backend has closed, waits for the
// end of stdin before it calls the connection cut. Input piped from a
// program that is done ends within it; an open terminal does not.
const cutGrace = 250 * time.Millisecond

// errCut is bridge's error when the backend closed the connection while
// stdin was still open: whatever was still to come was never served (a
// backend that quiesces must finish its connections, not drop them).
var errCut = errors.New("connection cut: the backend closed it before the end of stdin")

// bridge copies in→c and c→out like socat: EOF on in half-closes c so the
// backend sees the end of the request, and the bridge ends when the backend
// closes its side. It fails when the connection was cut: a read or write
// failed (a reset), or the backend closed its side before stdin ended.
//
// A connection without half-close (a named pipe on Windows) cannot carry
// the end of in to the backend. Then, once in has ended, the bridge keeps
// copying the backend's output until the backend closes or has sent
// nothing for eofWait, and closes the connection: like nc -q, so that
// `echo request | portier dial svc` prints the answer and returns instead
// of waiting for an end the backend was never told about.
func bridge(c halfCloser, in io.Reader, out io.Writer, eofWait time.Duration) error {
	defer c.Close()
	var lingering atomic.Bool
	upErr := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, in)
		cerr := c.CloseWrite()
		if err == nil && errors.Is(cerr, errors.ErrUnsupported) {
			// Set the flag before the deadline: a read that returns in
			// between extends the deadline itself.
			lingering.Store(true)
			cerr = c.SetReadDeadline(time.Now().Add(eofWait))
		}
		if err == nil {
			err = cerr
		}
		upErr <- err
	}()
	downErr := copyDown(c, out, &lingering, eofWait)
	if downErr != nil && !errors.Is(downErr, io.EOF) {
		return fmt.Errorf("connection cut: %w", downErr)
	}
	// The backend closed, or went quiet after the end of stdin where there
	// is no half-close. It may close right after it read the end of the
	// request, while this side is still finishing stdin: give that a
	// moment, but do not wait for a terminal.
	t := time.NewTimer(cutGrace)
	defer t.Stop()
	select {
	case err := <-upErr:
		if err != nil {
			return fmt.Errorf("connection cut before all of stdin was sent: %w", err)
		}
		return nil
	case <-t.C:
		return errCut
	}
}

// copyDown copies c to out until c ends, or, once lingering is set, until
// c has been silent for eofWait (which is not an error).
func copyDown(c halfCloser, out io.Writer, lingering *atomic.Bool, eofWait time.Duration) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if lingering.Load() {
				if derr := c.SetReadDeadline(time.Now().Add(eofWait)); derr != nil {
					return derr
				}
			}
			if _, werr := out.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded) && lingering.Load():
			return nil
		default:
			return err
		}
	}
}
