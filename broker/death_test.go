//go:build unix

package broker

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/portier/portier/client"
	"github.com/portier/portier/handoff"
	"github.com/portier/portier/internal/fdcount"
)

// A backend that dies holding an offer: the client must end up served by a
// new backend or refused with a typed error, never with a plain I/O error.
// The broker releases the client only once the dead backend is reaped
// (supervisor.awaitDeath), so the client's reconnect fails cleanly and its
// retried Hello (client: rehello) reaches a fresh backend.

func TestBackendDiesOnOfferClientServedOrRefused(t *testing.T) {
	h := newHarness(t, nil)
	h.define("fragile", "1.0.0", "die-on-offer", "")
	h.warm("fragile")
	first := h.onlyBackend()
	base := fdcount.Count(t)

	// Dial may return before the route is settled; Route settles it (and
	// surfaces a failed reconnect), so the 2 s bound covers both.
	start := time.Now()
	c, err := h.dial("fragile")
	var route client.Route
	if err == nil {
		route = c.Route()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err = io.WriteString(c, "x"); err == nil {
			_, err = io.ReadFull(c, make([]byte, 1))
		}
		if err != nil {
			c.Close()
		}
	}
	elapsed := time.Since(start)
	var re *client.RefusedError
	switch {
	case err == nil:
		t.Logf("served on route %s after the backend died (%s)", route, elapsed)
		echo(t, c, "served by a fresh backend")
		c.Close()
		if n := h.spawns("fragile", "started"); n != 2 {
			t.Fatalf("spawns = %d, want 2 (the dead backend replaced)", n)
		}
		if now := h.onlyBackend(); now.GetPid() == first.GetPid() {
			t.Fatalf("still routed to the dead backend pid %d", first.GetPid())
		}
	case errors.As(err, &re):
		t.Logf("typed refusal after the backend died (%s): %v", elapsed, err)
	default:
		t.Fatalf("dial after the backend died on the offer: %v; want service or a *client.RefusedError", err)
	}
	if elapsed > 2*time.Second {
		t.Fatalf("client took %s; want an answer within 2s", elapsed)
	}
	h.settle()
	st := h.b.orch.Stats()
	if st.TotalFallbacks() != 1 || st.Completed != 0 {
		t.Fatalf("fallbacks = %d, completed = %d; want 1, 0 (%+v)", st.TotalFallbacks(), st.Completed, st)
	}
	// The offer went out and the control connection closed: the broker
	// abandoned the attempt as a lost transport, not as a rejection the
	// backend never sent.
	if got := st.Fallback(handoff.StageAwaitAck, handoff.ReasonTransferFailed); got != 1 {
		t.Fatalf("await_ack/transfer_failed fallbacks = %d, want 1 (%+v)", got, st)
	}
	eventually(t, 5*time.Second, "broker fd count back to baseline", func() bool { return fdcount.Count(t) <= base })
}
