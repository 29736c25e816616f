// Package broker owns the portier daemon: the accept loop and peer policy,
// Hello routing, the supervision of backends (on-demand spawn, identity
// checks, registration, idle quiesce, re-adoption after a broker restart),
// the handoff fast path, admin verbs and metrics.
//
// A connection's first frame decides what it is: a Hello (payload protocol
// 0) from a client, a Register (0xF001) from a backend opening its control
// connection, or an admin request (0xAD01). The broker reads exactly that one
// frame from a client; everything after it belongs to the backend.
//
// Everything above is platform-neutral. The operating system shows through
// a few small files: accept_<os>.go (the listener, the accepted connection's
// type and the accept loop), transport_<os>.go (the handoff.Transport that
// moves a client connection to a backend: SCM_RIGHTS on Unix,
// DuplicateHandle on Windows), spawn_<os>.go (starting, stopping and
// identifying backend processes, and naming their endpoints) and
// state_<os>.go (where the state file lives).
package broker
