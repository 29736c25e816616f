package client

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/portier/portier/internal/logtail"
)

// Backoff of the connection retries after starting the broker.
const (
	autoStartFirstDelay = 5 * time.Millisecond
	autoStartMaxDelay   = 200 * time.Millisecond
)

// startRecord remembers a broker this process started, so concurrent Dials
// do not start one each, and so a timeout can say how the child ended.
type startRecord struct {
	at     time.Time
	bin    string
	log    string        // the broker's log file; "" where there is none
	exited chan struct{} // closed when the child has been reaped
	err    error         // the child's exit error; valid after exited is closed
}

var autoStarts struct {
	sync.Mutex
	m map[string]*startRecord // by socket path
}

// exitAlreadyRunning is portier serve's exit status when another broker
// holds the socket: that broker is the one to wait for.
const exitAlreadyRunning = 3

// failed reports whether the started broker has exited with a failure, so
// that waiting longer for it to serve is pointless. Exiting because another
// broker runs is not a failure: that broker may still be starting.
func (r *startRecord) failed() bool {
	select {
	case <-r.exited:
	default:
		return false
	}
	var ee *exec.ExitError
	return r.err != nil && !(errors.As(r.err, &ee) && ee.ExitCode() == exitAlreadyRunning)
}

// testHookBrokerExited, when set, is called after a started broker has been
// reaped. Tests use it to wait for their helper processes.
var testHookBrokerExited func(error)

// autoStart starts the broker (unless this process just did) and waits for it
// to accept on d.sock, retrying with exponential backoff.
func (d *dialer) autoStart(first error) (osConn, error) {
	cfg := d.cfg.autoStart
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultAutoStartTimeout
	}
	end := d.deadline(timeout)
	rec, err := ensureStarted(cfg, d.sock, timeout)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w; auto-start: %w", ErrBrokerUnavailable, d.sock, first, err)
	}
	last := first
	delay := autoStartFirstDelay
	for {
		if err := d.sleep(min(delay, max(0, time.Until(end)))); err != nil {
			return nil, err
		}
		uc, err := dialEndpoint(d.ctx, d.sock, d.deadline(d.cfg.handshakeTimeout))
		if err == nil {
			return d.checkPeer(uc)
		}
		if d.ctxDone() {
			return nil, d.ctxErr()
		}
		if !brokerMissing(err) {
			return nil, fmt.Errorf("%w: %s: %w", ErrBrokerUnavailable, d.sock, err)
		}
		last = err
		if rec.failed() {
			return nil, fmt.Errorf("%w: started %s serve, but it failed before serving %s (%s): %w",
				ErrBrokerUnavailable, rec.bin, d.sock, rec.describe(), last)
		}
		if !time.Now().Before(end) {
			break
		}
		delay = min(2*delay, autoStartMaxDelay)
	}
	return nil, fmt.Errorf("%w: started %s serve, but %s was not served within %s (%s): %w",
		ErrBrokerUnavailable, rec.bin, d.sock, timeout, rec.describe(), last)
}

// describe says how the started broker is doing and where its log is.
func (r *startRecord) describe() string {
	status := "it is still running"
	select {
	case <-r.exited:
		if r.err != nil {
			status = "it exited: " + r.err.Error()
		} else {
			status = "it exited with status 0"
		}
	default:
	}
	if r.log != "" {
		status += "; its log is " + r.log
		if line := logtail.LastLine(r.log); line != "" {
			status += fmt.Sprintf(", ending %q", line)
		}
	}
	return status
}

// brokerLogName is the auto-started broker's log, in the socket's
// directory (so $XDG_RUNTIME_DIR/portier/broker.log by default), on
// Windows in the pipe's state directory.
const brokerLogName = "broker.log"

// sleep waits for t or until ctx ends.
func (d *dialer) sleep(t time.Duration) error {
	if t <= 0 {
		return nil
	}
	timer := time.NewTimer(t)
	defer timer.Stop()
	select {
	case <-d.ctx.Done():
		return d.ctxErr()
	case <-timer.C:
		return nil
	}
}

// ensureStarted starts `<bin> serve --socket <sock>` detached, unless this
// process started a broker for sock less than window ago.
func ensureStarted(cfg *AutoStartConfig, sock string, window time.Duration) (*startRecord, error) {
	autoStarts.Lock()
	defer autoStarts.Unlock()
	if r := autoStarts.m[sock]; r != nil && time.Since(r.at) < window && !r.failed() {
		return r, nil
	}
	bin, err := resolveBinary(cfg)
	if err != nil {
		return nil, err
	}
	abs, err := absEndpoint(sock)
	if err != nil {
		return nil, err
	}
	// Stdin stays nil, the null device: the broker outlives this process
	// and must not hold its terminal or pipes. Its output goes to a log
	// file in the socket's directory (where the platform has one), which
	// the broker keeps capped (--log-file) and which errors name.
	logFile, logPath, err := openBrokerLog(abs)
	if err != nil {
		return nil, err
	}
	args := []string{"serve", "--socket", abs}
	if logFile != nil {
		defer logFile.Close() // the child has its own copy
		args = append(args, "--log-file", logPath)
		fmt.Fprintf(logFile, "%s portier client (pid %d) starting %s %s\n", time.Now().Format(time.RFC3339), os.Getpid(), bin, strings.Join(args, " "))
	}
	cmd, err := startDetached(func() *exec.Cmd {
		cmd := exec.Command(bin, args...)
		if logFile != nil {
			cmd.Stdout, cmd.Stderr = logFile, logFile
		}
		return cmd
	})
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	r := &startRecord{at: time.Now(), bin: bin, log: logPath, exited: make(chan struct{})}
	hook := testHookBrokerExited
	// Reap the child whenever it exits, so it never lingers as a zombie
	// while this process lives.
	go func() {
		r.err = cmd.Wait()
		close(r.exited)
		if hook != nil {
			hook(r.err)
		}
	}()
	if autoStarts.m == nil {
		autoStarts.m = make(map[string]*startRecord)
	}
	autoStarts.m[sock] = r
	return r, nil
}

// resolveBinary picks the portier executable: the configured one, else
// $PORTIER_BIN, else this executable when it is portier itself (so `portier
// dial` starts its own broker even when not on $PATH), else portier from
// $PATH.
func resolveBinary(cfg *AutoStartConfig) (string, error) {
	if cfg.Binary != "" {
		return cfg.Binary, nil
	}
	if b := os.Getenv("PORTIER_BIN"); b != "" {
		return b, nil
	}
	if exe, err := os.Executable(); err == nil && strings.TrimSuffix(filepath.Base(exe), ".exe") == "portier" {
		return exe, nil
	}
	bin, err := exec.LookPath("portier")
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return "", fmt.Errorf("no portier binary: set AutoStartConfig.Binary or $PORTIER_BIN, or put portier on $PATH: %w", err)
		}
		return "", err
	}
	return bin, nil
}
