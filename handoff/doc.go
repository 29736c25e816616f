// Package handoff owns the broker-independent heart of a connection handoff:
// the decision whether to attempt one (capabilities, fd pressure, an
// in-flight bound and a per-backend failed-attempt window), the one-time
// tokens, and the life cycle of each attempt through its stages, ending in a
// stage-by-stage Outcome with leak accounting for Windows handles.
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
//	// if that fails: a.Abandon(handoff.ReasonTransferFailed, err.Error())
//	a.Start(ctx, transport, func(out handoff.Outcome) {
//		// close the broker's copy of the connection, count out
//	})
//
// The reader of the backend's control connection calls Orchestrator.Ack for
// every HandoffAck it receives, and Attempt.Abandon for every attempt still
// pending when the connection closes. No goroutine waits per attempt: the
// ACK, the ACK deadline's timer or the abandonment completes it.
//
// Every failure at every stage ends in a fallback Outcome, never in a panic
// or an error the client sees: the token is revoked, the attempt leaves the
// pending table and its in-flight slot is released, so the client simply
// reconnects to the backend's own endpoint. Tokens are 128 bits from
// crypto/rand, compared in constant time, consumed at most once (and revoked
// on every abandonment), bounded in number (Config.MaxPending) and lifetime
// (Config.TokenTTL), and never appear in formatted output or logs.
//
// Files, one concept each: outcome.go (Stage, Reason, Outcome, Stats),
// transport.go (Offer, Transport), token.go (Token and its redaction),
// pending.go (the one table of pending attempts), policy.go (the decision
// and the failed-attempt window), orchestrator.go (Begin, Ack, the
// bookkeeping) and attempt.go (Start, Abandon, the deadline). Time is always
// read from Config.Now and waits use runtime timers, so tests drive every
// deadline and TTL with testing/synctest.
package handoff
