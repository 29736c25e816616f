package handoff_test

import (
	"context"
	"fmt"
	"time"

	"github.com/portier/portier/handoff"
)

// loopback stands in for the broker's per-backend Transport. Its Deliver
// plays the backend too: it checks the offer and ACKs it at once, the way
// the control-connection reader would call Orchestrator.Ack.
type loopback struct{ orch *handoff.Orchestrator }

func (loopback) Transfer(context.Context, *handoff.Offer) error { return nil } // Unix: nothing to do
func (l loopback) Deliver(_ context.Context, o *handoff.Offer) (bool, error) {
	return true, l.orch.Ack(o.ConnectionID, o.Token, true, "", time.Now())
}
func (loopback) Reclaim(*handoff.Offer) error { return nil }

func Example() {
	orch := handoff.NewOrchestrator(handoff.Config{})
	key := handoff.BackendKey{Service: "echo", Version: "1.2.0"}
	in := handoff.Inputs{ClientCapable: true, PolicyEnabled: true, BackendCapable: true}

	a, d := orch.Begin(key, 1, "echo", in)
	if a == nil {
		fmt.Println("fallback:", d.Reason)
		return
	}
	// The broker writes Negotiated{token: a.Token(), connection_id: 1} here;
	// on a write error it calls a.Abandon instead of Start.
	fmt.Println("negotiated with", a.Token())

	// finish runs once with the outcome: here before Start returns, since
	// the ACK arrived while Deliver ran; otherwise on the goroutine that
	// calls Ack or Abandon, or at the ACK deadline.
	a.Start(context.Background(), loopback{orch}, func(out handoff.Outcome) {
		fmt.Println("completed:", out.Completed)
	})

	// A client that does not support handle passing gets the reconnect route.
	_, d = orch.Begin(key, 2, "echo", handoff.Inputs{PolicyEnabled: true, BackendCapable: true})
	fmt.Println("fallback:", d.Reason)

	s := orch.Stats()
	fmt.Println(s.Completed, s.Fallback(handoff.StageDecide, handoff.ReasonClientUnsupported), s.InFlight, s.Pending)
	// Output:
	// negotiated with token(redacted)
	// completed: true
	// fallback: client_unsupported
	// 1 1 0 0
}
