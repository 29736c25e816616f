// Package backend owns the backend side of portier: Listen returns a
// *Listener (a net.Listener) whose Accept yields handed-off connections and
// direct (reconnect-route) connections alike, so a backend serves both with
// one accept loop.
//
// Under the broker (the PORTIER_* environment is present) the listener
// listens on PORTIER_BACKEND_ENDPOINT, registers with the broker over a
// persistent control connection, receives handoff offers on it, writes the
// handoff-ready event on each handed-off connection before any application
// code can read from it, and acknowledges the offer (offer.go holds that
// path from the check to the ACK). It re-registers with a restarted broker.
// It admits direct connections only from its own user and removes the spawn
// secret from the process environment once read.
//
// Every connection Accept returns is a *Conn, counted as live until the
// program closes it (conn.go). The listener reports the count to the
// broker, which therefore never stops a backend for idleness while a client
// is connected. When the broker does ask the backend to quiesce (it was
// idle, its binary or definition changed, `portier stop`), the listener
// stops gracefully: Accept returns what was already handed off, then
// net.ErrClosed, and Shutdown waits for the connections in progress.
//
// Standalone (no broker environment) it listens on the address given with
// the Address option, so the same program runs with or without a broker.
//
//	l, err := backend.Listen(ctx)
//	if err != nil {
//		return err
//	}
//	for c, err := l.Accept(); err == nil; c, err = l.Accept() {
//		go serve(c) // closes c when done
//	}
//	return l.Shutdown(context.Background()) // let live connections finish
package backend
