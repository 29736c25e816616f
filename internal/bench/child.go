package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// childEnv is the bench's environment without PORTIER_* variables, so a
// user's PORTIER_SOCKET or a broker environment cannot leak into the
// processes the bench starts.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PORTIER_") {
			env = append(env, kv)
		}
	}
	return env
}

// child is a process the bench started, with line-oriented stdout and a
// bounded copy of its stderr.
type child struct {
	ctx    context.Context // ends the bench's waits on the child
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string // stdout lines; closed at EOF
	stderr *tailBuffer
	done   chan struct{} // closed when Wait returned
	err    error         // Wait's result, valid after done

	// abandon is closed once the bench stops listening to the child, so
	// the stdout reader never blocks on lines nobody will read.
	abandon     chan struct{}
	abandonOnce sync.Once
}

// startChild runs exe with args in its own process group, killed if the
// bench dies (childSysProcAttr).
func startChild(ctx context.Context, name, exe string, args ...string) (*child, error) {
	cmd := exec.Command(exe, args...)
	cmd.Env = childEnv()
	cmd.SysProcAttr = childSysProcAttr()
	c := &child{ctx: ctx, name: name, cmd: cmd, lines: make(chan string, 16), stderr: &tailBuffer{max: 8 << 10},
		done: make(chan struct{}), abandon: make(chan struct{})}
	cmd.Stderr = c.stderr
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			select {
			case c.lines <- sc.Text():
			case <-c.abandon:
				return
			}
		}
	}()
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// errNoLine: the child ended or timed out before printing the expected line.
var errNoLine = errors.New("no output")

// readLine waits up to d for the next stdout line.
func (c *child) readLine(d time.Duration) (string, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case l, ok := <-c.lines:
		if !ok {
			<-c.done
			return "", fmt.Errorf("%s exited (%v) before answering: %w%s", c.name, c.err, errNoLine, c.stderr.suffix())
		}
		return l, nil
	case <-t.C:
		return "", fmt.Errorf("%s: no answer within %s: %w%s", c.name, d, errNoLine, c.stderr.suffix())
	case <-c.ctx.Done():
		return "", fmt.Errorf("%s: %w", c.name, c.ctx.Err())
	}
}

// expect reads the next line and checks that it is want.
func (c *child) expect(want string, d time.Duration) error {
	l, err := c.readLine(d)
	if err != nil {
		return err
	}
	if l != want {
		return fmt.Errorf("%s said %q, want %q%s", c.name, l, want, c.stderr.suffix())
	}
	return nil
}

func (c *child) send(line string) error {
	_, err := io.WriteString(c.stdin, line+"\n")
	return err
}

func (c *child) release() { c.abandonOnce.Do(func() { close(c.abandon) }) }

// wait waits up to d for the child to exit, then kills it.
func (c *child) wait(d time.Duration) error {
	defer c.release()
	_ = c.stdin.Close()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		c.kill()
		return fmt.Errorf("%s did not exit within %s%s", c.name, d, c.stderr.suffix())
	}
	if c.err != nil {
		return fmt.Errorf("%s: %w%s", c.name, c.err, c.stderr.suffix())
	}
	return nil
}

// kill ends the child (SIGKILL) and waits for it.
func (c *child) kill() {
	defer c.release()
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Kill()
	<-c.done
}

// terminate asks the child to stop (SIGTERM) and kills it after grace.
func (c *child) terminate(grace time.Duration) {
	defer c.release()
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		c.kill()
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

// suffix renders the captured stderr for an error message.
func (t *tailBuffer) suffix() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(string(t.b))
	if s == "" {
		return ""
	}
	return "\n--- its stderr:\n" + s
}
