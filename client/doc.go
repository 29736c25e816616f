// Package client owns the client side of portier: Dial, which sends the Hello
// to the per-user broker, adopts a connection the broker handed to a backend,
// falls back to the backend's own endpoint (backend_pipe) whenever the handoff
// does not complete, keeps the per-process hello-skip cache, starts the broker
// on demand (AutoStart) and turns refusals into typed errors.
//
// # Routes
//
// A *Conn reaches its backend on one of three routes (Conn.Route):
//
//   - Handoff: the connection the client opened to the broker now belongs to
//     the backend. The client saw Negotiated with a handoff token, then the
//     backend's handoff-ready event carrying that token.
//   - Reconnect: the broker answered Negotiated, but no handoff was attempted
//     or it did not complete (EOF, a refused or mismatched ready event,
//     garbage, or the ready timeout). The client dialed backend_pipe.
//   - Direct: HelloSkip found a cached backend_pipe for this broker, service
//     and version and dialed it without talking to the broker at all.
//
// A failed handoff is never an error to the caller: every failure after
// Negotiated ends on the reconnect route. Dial returns
// an error only when the broker cannot be reached (ErrBrokerUnavailable), the
// broker refuses (*RefusedError), the broker breaks the protocol before or in
// its reply (*ProtocolError), backend_pipe itself cannot be dialed
// (ErrBackendUnavailable), the arguments are invalid (ErrInvalidArgument) or
// ctx ends (the wrapped ctx.Err()).
//
// # Early data
//
// EarlyData is written in the same write as the Hello. The broker reads
// exactly one frame, so the bytes stay in the socket for the backend. The
// backend writes the ready event before its application reads a byte, so a
// client that saw no ready event knows nobody consumed its early data and
// replays it on the reconnect route; a client that saw the ready event never
// replays it. Keep early data small (a first request, not a bulk upload):
// bytes that do not fit in the socket buffer are written while the client
// waits for the broker's reply.
//
// # One adoption path
//
// Whether a negotiated handoff is adopted or replaced by the reconnect route
// is decided in one place (adopt.go), whether Dial waits for it (AwaitReady,
// or a ready event that arrived with Negotiated) or the Conn's first use
// does. The files follow the steps: dial.go connects (the broker, AutoStart,
// the hello-skip route), handshake.go builds the Hello and parses Negotiated
// and the ready event, adopt.go adopts or reconnects and replays, and
// conn.go is the net.Conn.
//
// # Syscalls on the hot path
//
// The handoff route costs one connect, one getsockopt (the broker's peer
// credentials), one write (Hello plus early data) and usually one or two
// reads: the client owns its socket, so it reads ahead into a buffer, parses
// Negotiated and the ready event from it, and hands any application bytes
// that followed to the first Conn.Read calls.
package client
