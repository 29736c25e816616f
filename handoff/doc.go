// Package handoff owns the broker-independent heart of a connection handoff:
// one-time tokens, the pending-ACK registry with its deadlines, the fallback
// policy (capabilities, fd pressure, a per-backend failed-attempt window and an
// in-flight bound), and the Orchestrator that drives one handoff through its
// stages and reports a stage-by-stage Outcome with leak accounting.
//
// The package knows nothing about sockets, pipes, frames or processes. The
// broker implements Transport for each backend control connection and wires
// the orchestrator into its accept path:
//
//	a, d := orch.Begin(key, connID, service, inputs)
//	if a == nil {
//		// d.Reason says why; the client goes the reconnect route.
//	}
//	// write Negotiated{token: a.Token(), connection_id: a.ConnectionID()} to the client;
//	// if that fails: a.Cancel(handoff.ReasonCanceled, err.Error())
//	out := a.Run(ctx, transport) // transfer, deliver, await ACK, acknowledge
//
// and the reader of the backend's control connection calls
// Orchestrator.Ack for every HandoffAck it receives.
//
// Every failure at every stage ends in a Fallback outcome, never in a panic or
// an error the client sees: the token is revoked, the pending entry removed
// and the in-flight slot released, so the client simply takes the reconnect
// route (DESIGN.md contract 1). Tokens never appear in formatted output or
// logs (contract 3).
//
// Each component (TokenStore, AckRegistry, Policy, Limiter) is usable on its
// own and safe for concurrent use; the Orchestrator composes them. Time is
// always passed in (or read from Config.Now) and waits use real timers, so
// tests drive every deadline and TTL with testing/synctest.
package handoff
