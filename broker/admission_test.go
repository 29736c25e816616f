//go:build unix

package broker

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/portier/portier/client"
	"github.com/portier/portier/internal/fdcount"
	"github.com/portier/portier/wire"
)

// Fair admission (issue 11 item 6): connections that send nothing, or
// trickle, cannot keep real clients from being served or answered.

// openIdle opens n connections to the broker that send nothing, and closes
// them when the test ends.
func openIdle(t *testing.T, sock string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range n {
		c, err := net.DialTimeout("unix", sock, 5*time.Second)
		if err != nil {
			t.Fatalf("idle connection %d: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	return conns
}

// TestIdleConnectionsDoNotStarveClients: 1,000 connections of the same user
// that send nothing (twice the broker's 512 Hello slots) do not make any of
// 25 concurrent client.Dial calls with default options time out: they are
// all served. The broker's Hello deadline is set above the client's
// handshake timeout (30 s against 15 s), so a broker that let silent
// connections hold slots until that deadline would fail every client
// behind them, not just the unlucky few it fails with the defaults.
func TestIdleConnectionsDoNotStarveClients(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.HelloTimeout = 30 * time.Second })
	h.define("echo", "1.0.0", "echo", "")
	h.warm("echo")
	base := fdcount.Count(t)
	idle := openIdle(t, h.sock, 1000)

	const clients = 25
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			c, err := client.Dial(context.Background(), "echo", client.Socket(h.sock))
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			msg := []byte{byte(i)}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(msg); err != nil {
				errs <- err
				return
			}
			if _, err := c.Read(msg); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a client beside 1,000 idle connections: %v", err)
	}
	for _, c := range idle {
		c.Close()
	}
	eventually(t, 10*time.Second, "broker fd count back to baseline", func() bool { return fdcount.Count(t) <= base })
}

// TestFullHelloSlotsAnsweredRateLimited: when peers that send a header and
// then nothing hold every Hello slot, a client is refused RATE_LIMITED with
// a retry delay, at once, rather than left to time out.
func TestFullHelloSlotsAnsweredRateLimited(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxHelloConns = 2 })
	h.define("echo", "1.0.0", "echo", "")
	for _, c := range openIdle(t, h.sock, 2) {
		var hdr [wire.HeaderLen]byte
		hdr[0] = wire.FramingVersion
		binary.LittleEndian.PutUint32(hdr[1:], 100) // and then trickle nothing
		if _, err := c.Write(hdr[:]); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "the trickling peers to hold both slots", func() bool { return len(h.b.helloSlots) == 2 })
	start := time.Now()
	_, err := client.Dial(context.Background(), "echo", client.Socket(h.sock))
	var re *client.RefusedError
	if !errors.As(err, &re) || !errors.Is(err, client.ErrRateLimited) || re.RetryAfter <= 0 {
		t.Fatalf("dial with every Hello slot held: %v; want RATE_LIMITED with a retry delay", err)
	}
	t.Logf("refused after %s: %v", time.Since(start).Round(time.Millisecond), err)
	// The trickling peers are cut off at the Hello deadline; the next
	// client is served.
	eventually(t, 10*time.Second, "the slots to be free again", func() bool { return len(h.b.helloSlots) == 0 })
	c, err := h.dial("echo")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo(t, c, "served once the slots are free")
}
