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
//   - Direct: the hello-skip fast path (on unless NoHelloSkip) found a cached
//     backend_pipe for this broker, service and version and dialed it
//     without talking to the broker at all.
//
// A failed handoff is never an error to the caller: every failure after
// Negotiated ends on the reconnect route. Dial returns
// an error only when the broker cannot be reached (ErrBrokerUnavailable, or
// ErrBrokerMissing when none runs), the
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
//
// # Windows
//
// On Windows the broker's endpoint is the named pipe
// \\.\pipe\portier-<hash of the user's SID> (or $PORTIER_SOCKET), and every
// route works as on Unix: Hello with early data in one write, Negotiated,
// the ready event or the reconnect to backend_pipe (the backend's own
// pipe) with the replay, a fresh Hello when backend_pipe is dead,
// hello-skip, AutoStart. What differs:
//
//   - No half-close. Byte-mode named pipes cannot shut one direction, and
//     portier does not emulate it (a zero-length write is not delivered in
//     byte mode, and a marker in the stream would corrupt it), so
//     Conn.CloseWrite and Conn.CloseRead return an error matching
//     errors.ErrUnsupported and leave the connection as it was. Close is the
//     end of the stream. A protocol that needs the end of a request while
//     the answer is still to be read must delimit its requests itself;
//     `portier dial` reads on after its input ended until the backend has
//     been silent for --eof-wait.
//   - A busy pipe is waited for. While every instance of a pipe is in use,
//     Dial waits (WaitNamedPipe, within HandshakeTimeout and ctx) for one to
//     come free. A pipe that offers no free instance for a second has nobody
//     listening: what a broker leaves behind when it exits while backends
//     still hold connections it handed them. Like a missing pipe
//     (ERROR_FILE_NOT_FOUND) that is ErrBrokerMissing, and AutoStart starts
//     a broker.
//   - Peer checks. The broker's pipe, and backend_pipe too, must be served
//     by this user (ipc.CheckPeer): pipe names are one namespace for all
//     users, without the private directory that guards them on Unix. Pipes
//     are opened with SECURITY_ANONYMOUS, so a server cannot impersonate the
//     client.
//   - The last look for a ready event after ReadyTimeout uses
//     PeekNamedPipe, and reads only what is already there.
//   - Conn.SyscallConn offers Control only (the pipe handle).
package client
