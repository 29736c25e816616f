package portiertest_test

import (
	"bufio"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portier/portier/client"
	"github.com/portier/portier/internal/fdcount"
	"github.com/portier/portier/portiertest"
	"go.uber.org/goleak"
)

// roundTrip writes msg and a newline, and reads the backend's reply line
// (the roles answer line by line: a named pipe has no half-close to end a
// request with).
func roundTrip(t *testing.T, c *client.Conn, msg string) string {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reply %q: %v", line, err)
	}
	return strings.TrimSuffix(line, "\n")
}

// TestNewBrokerCleansUp: a broker, its backends (real processes, handed
// real connections) and its directory are gone when the test that made
// them ends, with no goroutine or descriptor left behind.
func TestNewBrokerCleansUp(t *testing.T) {
	fds := fdcount.Count(t)
	var b *portiertest.Broker
	t.Run("use", func(t *testing.T) {
		b = portiertest.NewBroker(t, portiertest.Service{Name: "echo", Role: "echo"})
		for _, opts := range [][]client.Option{{client.AwaitReady()}, {client.NoHandoff()}} {
			c, err := b.Dial(t.Context(), "echo", opts...)
			if err != nil {
				t.Fatal(err)
			}
			if got := roundTrip(t, c, "ping"); got != "ping" {
				t.Errorf("echo = %q", got)
			}
			c.Close()
		}
	})
	if _, err := os.Stat(b.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the broker's directory %s is still there: %v", b.Dir, err)
	}
	goleak.VerifyNone(t, leakOptions...)
	if after := fdcount.Count(t); after != fds {
		t.Errorf("descriptors: %d before, %d after", fds, after)
	}
	if err := b.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
}

// TestDefine: a definition written during the test is served at the next
// Hello, as a user's edit would be.
func TestDefine(t *testing.T) {
	b := portiertest.NewBroker(t)
	if _, err := b.Dial(t.Context(), "upper"); !errors.Is(err, client.ErrServiceUnknown) {
		t.Fatalf("dial before the definition = %v, want ErrServiceUnknown", err)
	}
	if err := b.Define(portiertest.Service{Name: "upper", Version: "2.0.0", Role: "upper", Env: map[string]string{"X": "y"}, TOML: `idle_timeout = "0"`}); err != nil {
		t.Fatal(err)
	}
	c, err := b.Dial(t.Context(), "upper", client.Version("2.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := roundTrip(t, c, "shout"); got != "SHOUT" {
		t.Errorf("upper = %q", got)
	}
	if c.DaemonVersion() != "2.0.0" {
		t.Errorf("version %q", c.DaemonVersion())
	}
}

// TestUnknownRole: a role TestMain does not serve fails the backend's
// start, and the refusal carries BackendMain's explanation (the tail of
// the backend's output).
func TestUnknownRole(t *testing.T) {
	b := portiertest.NewBroker(t, portiertest.Service{Name: "ghost", Role: "no-such-role"})
	_, err := b.Dial(t.Context(), "ghost")
	var refused *client.RefusedError
	if !errors.As(err, &refused) || !errors.Is(err, client.ErrSpawnFailed) {
		t.Fatalf("dial ghost = %v, want a spawn failure", err)
	}
	if tail := refused.Details["stderr_tail"]; !strings.Contains(tail, `no backend for role "no-such-role"; pass it to BackendMain in TestMain`) {
		t.Errorf("the refusal's output tail %q does not explain the missing role", tail)
	}
}

// TestBadServices: definitions that cannot work are refused by StartBroker
// and leave nothing behind.
func TestBadServices(t *testing.T) {
	before, _ := filepath.Glob(filepath.Join(os.TempDir(), "portiertest*"))
	for _, s := range []portiertest.Service{
		{},
		{Name: "x"},
		{Name: "x", Role: "echo", Command: []string{os.Args[0]}},
	} {
		if b, err := portiertest.StartBroker(nil, s); err == nil {
			b.Close()
			t.Errorf("StartBroker(%+v) succeeded", s)
		}
	}
	after, _ := filepath.Glob(filepath.Join(os.TempDir(), "portiertest*"))
	if len(after) > len(before) {
		t.Errorf("temporary directories left behind: before %q, after %q", before, after)
	}
}
