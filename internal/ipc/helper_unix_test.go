//go:build unix

package ipc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// leakOptions: nothing on Unix runs a goroutine of its own.
var leakOptions []goleak.Option

// extraHelpers are helper roles defined by platform-specific test files.
var extraHelpers = map[string]func() int{}

// runHelper is the body of a re-executed test binary. It reports on stdout
// and takes orders from stdin, so the parent never has to sleep.
func runHelper(role string) int {
	in := bufio.NewReader(os.Stdin)
	switch role {
	case "singleton":
		// Wait for the parent's "go" so all children race at once.
		if _, err := in.ReadByte(); err != nil {
			fmt.Println("error: no go:", err)
			return 2
		}
		l, err := ListenSingleton(os.Getenv("PORTIER_IPC_TEST_PATH"))
		switch {
		case errors.Is(err, ErrAlreadyRunning):
			fmt.Println("already")
			return 0
		case err != nil:
			fmt.Println("error:", err)
			return 2
		}
		fmt.Println("ok")
		_, _ = io.Copy(io.Discard, in) // hold until the parent closes stdin
		if err := l.Close(); err != nil {
			fmt.Println("error: close:", err)
			return 2
		}
		return 0
	case "dial":
		// Connect to the socket and stay connected until stdin closes.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := Dial(ctx, os.Getenv("PORTIER_IPC_TEST_PATH"))
		if err != nil {
			fmt.Println("error:", err)
			return 2
		}
		fmt.Println("connected")
		_, _ = io.Copy(io.Discard, in)
		_ = c.Close()
		return 0
	case "wait":
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, in)
		return 0
	case "fds":
		// List the targets of our open descriptors.
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			fmt.Println("error:", err)
			return 2
		}
		for _, e := range ents {
			if t, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil {
				fmt.Println(t)
			}
		}
		return 0
	default:
		if run := extraHelpers[role]; run != nil {
			return run()
		}
		fmt.Println("unknown helper role", role)
		return 2
	}
}

// helper is a running re-executed test binary.
type helper struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

func startHelper(t *testing.T, role string, env ...string) *helper {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{helperEnv + "=" + role}, env...)...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	t.Cleanup(func() {
		_ = h.stdin.Close()
		_ = h.cmd.Wait()
	})
	return h
}

func (h *helper) line(t *testing.T) string {
	t.Helper()
	s, err := h.out.ReadString('\n')
	if err != nil {
		t.Fatalf("helper %d: read: %v (got %q)", h.cmd.Process.Pid, err, s)
	}
	return strings.TrimSpace(s)
}

func (h *helper) finish(t *testing.T) {
	t.Helper()
	_ = h.stdin.Close()
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("helper %d: %v", h.cmd.Process.Pid, err)
	}
}
