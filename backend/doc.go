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
// path from the check to the ACK). It re-registers with a restarted broker
// and closes itself when the broker asks it to quiesce. It admits direct
// connections only from its own user and removes the spawn secret from the
// process environment once read.
//
// Standalone (no broker environment) it listens on the address given with
// the Address option, so the same program runs with or without a broker.
//
//	l, err := backend.Listen(ctx)
//	for {
//		c, err := l.Accept()
//		if err != nil {
//			return err
//		}
//		go serve(c)
//	}
package backend
