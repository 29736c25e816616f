//go:build unix

package broker

import (
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portier/portier/client"
	"github.com/portier/portier/internal/fdcount"
	"github.com/portier/portier/wire"
)

func TestHandoffServesOnTheHelloSocket(t *testing.T) {
	h := newHarness(t, nil)
	h.define("echo", "1.0.0", "echo", "")
	// Warm up: the first connection starts the backend.
	c, err := h.dial("echo")
	if err != nil {
		t.Fatal(err)
	}
	echo(t, c, "warm")
	c.Close()

	base := fdcount.Count(t)
	for i := 0; i < 20; i++ {
		c, err := h.dial("echo")
		if err != nil {
			t.Fatal(err)
		}
		if c.Route() != client.Handoff {
			t.Fatalf("route = %s, want handoff", c.Route())
		}
		echo(t, c, "hello through the handed-off socket")
		c.Close()
	}
	eventually(t, 5*time.Second, "broker fd count back to baseline", func() bool { return fdcount.Count(t) <= base })
	h.settle() // a client is served before its backend's ACK reaches the broker
	if st := h.b.orch.Stats(); st.Completed < 20 {
		t.Fatalf("completed handoffs = %d, want >= 20", st.Completed)
	}
	if n := h.spawns("echo", "started"); n != 1 {
		t.Fatalf("spawns = %d, want 1", n)
	}
}

func TestEarlyDataReachesBackendIntact(t *testing.T) {
	h := newHarness(t, nil)
	h.define("echo", "1.0.0", "echo", "")
	for _, route := range []struct {
		name string
		opts []client.Option
		want client.Route
	}{
		{"handoff", nil, client.Handoff},
		{"reconnect", []client.Option{client.NoHandoff()}, client.Reconnect},
	} {
		t.Run(route.name, func(t *testing.T) {
			early := strings.Repeat("pipelined-after-hello;", 100)
			c, err := h.dial("echo", append(route.opts, client.EarlyData([]byte(early)))...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.Route() != route.want {
				t.Fatalf("route = %s, want %s", c.Route(), route.want)
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, len(early))
			if _, err := io.ReadFull(c, buf); err != nil {
				t.Fatal(err)
			}
			if string(buf) != early {
				t.Fatal("early data came back altered")
			}
		})
	}
}

func TestClientWithoutCapabilityReconnects(t *testing.T) {
	h := newHarness(t, nil)
	h.define("echo", "1.0.0", "echo", "")
	c, err := h.dial("echo", client.NoHandoff())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Route() != client.Reconnect {
		t.Fatalf("route = %s, want reconnect", c.Route())
	}
	echo(t, c, "via backend_pipe")
	if st := h.b.orch.Stats(); st.Attempts != 0 {
		t.Fatalf("handoff attempts = %d, want 0 (no token for a client without the bit)", st.Attempts)
	}
}

func TestConcurrentColdHellosSpawnOnce(t *testing.T) {
	h := newHarness(t, nil)
	h.define("echo", "1.0.0", "echo", "")
	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := h.dial("echo")
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, "x"); err != nil {
				errs <- err
				return
			}
			b := make([]byte, 1)
			if _, err := io.ReadFull(c, b); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := h.spawns("echo", "started"); n != 1 {
		t.Fatalf("spawns = %d, want exactly 1", n)
	}
}

func refusalCode(t *testing.T, err error) *client.RefusedError {
	t.Helper()
	var re *client.RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("error %v is not a *client.RefusedError", err)
	}
	return re
}

func TestRefusals(t *testing.T) {
	h := newHarness(t, nil)
	h.define("echo", "1.2.0", "echo", "min_version = \"1.1.0\"\n")
	h.define("broken", "1.0.0", "fail", "start_timeout = \"5s\"\n")

	t.Run("unknown service", func(t *testing.T) {
		_, err := h.dial("nope")
		if !errors.Is(err, client.ErrServiceUnknown) {
			t.Fatalf("err = %v, want ErrServiceUnknown", err)
		}
	})
	t.Run("version blocked", func(t *testing.T) {
		_, err := h.dial("echo", client.Version("1.0.0"))
		if !errors.Is(err, client.ErrVersionBlocked) {
			t.Fatalf("err = %v, want ErrVersionBlocked", err)
		}
		if re := refusalCode(t, err); re.RetryAfter <= 0 {
			t.Fatalf("VERSION_BLOCKED without retry_after: %+v", re)
		}
	})
	t.Run("allowed version", func(t *testing.T) {
		c, err := h.dial("echo", client.Version("1.1.5"))
		if err != nil {
			t.Fatal(err)
		}
		echo(t, c, "ok")
		c.Close()
	})
	t.Run("spawn failure then rate limit", func(t *testing.T) {
		for i := 1; i <= 3; i++ {
			_, err := h.dial("broken")
			if !errors.Is(err, client.ErrSpawnFailed) {
				t.Fatalf("start %d: err = %v, want ErrSpawnFailed", i, err)
			}
			re := refusalCode(t, err)
			if re.Code != wire.CodeBackendSpawnFailed {
				t.Fatalf("code = %v", re.Code)
			}
			if !strings.Contains(re.Details["stderr_tail"], "fatal: the database file is locked") {
				t.Fatalf("stderr_tail = %q, want the backend's last stderr line", re.Details["stderr_tail"])
			}
			if re.Details["exit_status"] != "exit status 1" {
				t.Fatalf("exit_status = %q", re.Details["exit_status"])
			}
		}
		_, err := h.dial("broken")
		if !errors.Is(err, client.ErrRateLimited) {
			t.Fatalf("4th start: err = %v, want ErrRateLimited", err)
		}
		if re := refusalCode(t, err); re.RetryAfter <= 0 || re.RetryAfter > 30*time.Second {
			t.Fatalf("retry_after = %s, want within the 30 s window", re.RetryAfter)
		}
	})
}

func TestDefinitionChangesSeenByNextHello(t *testing.T) {
	h := newHarness(t, nil)
	if _, err := h.dial("late"); !errors.Is(err, client.ErrServiceUnknown) {
		t.Fatalf("before definition: %v", err)
	}
	h.define("late", "1.0.0", "echo", "")
	c, err := h.dial("late")
	if err != nil {
		t.Fatalf("after adding the definition: %v", err)
	}
	echo(t, c, "new")
	c.Close()
	h.define("late", "2.0.0", "echo", "")
	c, err = h.dial("late", client.Version("2.0.0"))
	if err != nil {
		t.Fatalf("after editing the definition: %v", err)
	}
	if c.DaemonVersion() != "2.0.0" {
		t.Fatalf("daemon version = %q, want 2.0.0", c.DaemonVersion())
	}
	echo(t, c, "edited")
	c.Close()
}
