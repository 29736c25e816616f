//go:build unix

package broker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portier/portier/client"
	"github.com/portier/portier/wire"
)

// A client waits as long as its service's start takes (issue 11 item 2).
// These run real slow backends (the slow-start role, its delay set in the
// definition's environment) against client.Dial with its default options:
// no timeout is scaled down, so the 7 s start really takes 7 s.

// defineSlow writes <name>.toml for the slow-start role taking delay to
// register, with extra definition lines.
func (h *harness) defineSlow(name string, delay time.Duration, extra string) {
	h.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		h.t.Fatal(err)
	}
	body := fmt.Sprintf("name = %q\nversion = \"1.0.0\"\ncommand = [%s]\nenv = { %s = \"slow-start\", %s = %q }\n%s",
		name, strconv.Quote(exe), roleEnv, startDelayEnv, delay.String(), extra)
	writeFileAtomicTest(h.t, filepath.Join(h.svcDir, name+".toml"), body)
}

// dialDefault dials service with client.Dial's default options (only the
// socket is set) and a context without a deadline.
func (h *harness) dialDefault(service string, opts ...client.Option) (*client.Conn, error) {
	return client.Dial(context.Background(), service, append([]client.Option{client.Socket(h.sock)}, opts...)...)
}

// TestSevenSecondStartServedWithDefaults: a valid backend that needs 7 s to
// start (within the default start_timeout of 10 s) is served to a client
// with default options.
func TestSevenSecondStartServedWithDefaults(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.defineSlow("slow7", 7*time.Second, "")
	start := time.Now()
	c, err := h.dialDefault("slow7")
	if err != nil {
		t.Fatalf("dial after %s: %v", time.Since(start).Round(time.Millisecond), err)
	}
	defer c.Close()
	echo(t, c, "served after a 7 s start")
	if waited := time.Since(start); waited < 7*time.Second {
		t.Fatalf("served after %s, before the backend could have registered", waited)
	}
}

// TestStartSlowerThanStartTimeoutRefusedNamingIt: a backend slower than its
// start_timeout is refused BACKEND_SPAWN_FAILED with a reason that names
// start_timeout, while the default client still waits: never an i/o timeout.
func TestStartSlowerThanStartTimeoutRefusedNamingIt(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.defineSlow("tooslow", time.Minute, "start_timeout = \"1s\"\n")
	_, err := h.dialDefault("tooslow")
	var re *client.RefusedError
	if !errors.As(err, &re) || !errors.Is(err, client.ErrSpawnFailed) {
		t.Fatalf("dial: %v; want a BACKEND_SPAWN_FAILED refusal", err)
	}
	if !strings.Contains(re.Reason, "start_timeout 1s") {
		t.Fatalf("refusal %q does not name start_timeout", re.Reason)
	}
}

// TestShortHandshakeTimeoutRefusedNotTimedOut: a client whose own budget is
// shorter than the start hears why it was not served (BACKEND_SPAWN_FAILED,
// still starting, retry after 1 s) before it stops reading, instead of an
// i/o timeout: the deadline it tells the broker leads its own.
func TestShortHandshakeTimeoutRefusedNotTimedOut(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.defineSlow("slow3", 3*time.Second, "")
	for i, opt := range []client.Option{client.HandshakeTimeout(time.Second), nil} {
		ctx := context.Background()
		if opt == nil { // the caller's context bounds it instead
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancel()
		}
		_, err := client.Dial(ctx, "slow3", client.Socket(h.sock), opt)
		var re *client.RefusedError
		if !errors.As(err, &re) || re.Code != wire.CodeBackendSpawnFailed || re.RetryAfter != time.Second ||
			!strings.Contains(re.Reason, "still starting") {
			t.Fatalf("dial %d: %v; want BACKEND_SPAWN_FAILED, still starting, retry after 1s", i, err)
		}
	}
	c, err := h.dialDefault("slow3")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo(t, c, "the start went on")
}
