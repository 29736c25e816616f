package soak

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/portier/portier/backend"
)

// Environment of the soak's backends, set in the service definitions the
// soak writes.
const (
	// RoleEnv names the backend's role: "echo" is Backend; a test may define
	// faulty ones. A program re-executed as a soak backend dispatches on it.
	RoleEnv = "SOAK_BACKEND_ROLE"
	// RunEnv carries the soak run's id, by which the soak recognises its own
	// backend processes before it signals them.
	RunEnv = "SOAK_RUN_ID"
	// ServiceEnv carries the service the backend was started for.
	ServiceEnv = "SOAK_SERVICE"
)

const (
	// backendIdle bounds a backend's wait for the next request; the
	// long-lived clients send one a second.
	backendIdle = 30 * time.Second
	// ioTimeout bounds a backend's write of a reply.
	ioTimeout = 5 * time.Second
	// orphanTimeout: a backend whose broker went away and never came back
	// (the soak ended between a broker's death and its successor) exits on
	// its own after this, should the soak's own cleanup have missed it.
	orphanTimeout = 30 * time.Second
)

// Backend is the soak's echo backend, for the main of a program the soak
// starts as its backend command: it listens with backend.Listen and echoes
// every request frame it finds intact, and answers one it finds broken
// (wrong magic, sequence number, length or checksum) with a line that
// says why, then closes the connection. It returns when the listener
// has stopped (ctx ended, or the broker asked the backend to quiesce) and
// the connections it was serving have ended, or when ctx ends.
func Backend(ctx context.Context, log *slog.Logger) error {
	return serveBackend(ctx, log, func(c net.Conn) { serveFrames(c, nil) })
}

// serveBackend is the README's accept loop: accept until the listener
// stops (a quiesce included), then let the connections in progress finish
// (Shutdown), so a quiesce never cuts a client off. A signal (ctx) ends
// the wait.
func serveBackend(ctx context.Context, log *slog.Logger, serve func(net.Conn)) error {
	l, err := backend.Listen(ctx, backend.Logger(log), backend.OrphanTimeout(orphanTimeout))
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	for c, err := l.Accept(); err == nil; c, err = l.Accept() {
		go serve(c)
	}
	if err := l.Shutdown(ctx); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// serveFrames echoes request frames on c until the client half-closes. A
// non-nil mutate changes each reply before it is written (a faulty role).
func serveFrames(c net.Conn, mutate func(frame []byte)) {
	defer c.Close()
	var buf []byte
	for seq := uint32(0); ; seq++ {
		_ = c.SetReadDeadline(time.Now().Add(backendIdle))
		f, err := readRequest(c, buf, seq)
		if err != nil {
			if errors.Is(err, errBadRequest) {
				_ = c.SetWriteDeadline(time.Now().Add(ioTimeout))
				_, _ = io.WriteString(c, badPrefix+err.Error()+"\n")
			}
			return
		}
		buf = f[:0]
		if mutate != nil {
			mutate(f)
		}
		_ = c.SetWriteDeadline(time.Now().Add(ioTimeout))
		if _, err := c.Write(f); err != nil {
			return
		}
	}
}
