package soak

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain runs the test binary as a soak backend when the broker starts it
// with RoleEnv set; otherwise it runs the tests, checks for leaked
// goroutines and removes the portier binary it built.
func TestMain(m *testing.M) {
	if role := os.Getenv(RoleEnv); role != "" {
		os.Exit(runRole(role))
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		removeBuiltPortier()
		os.Exit(code)
	}))
}

// runRole is a soak backend: "echo" is the package's Backend; the others
// are faults for the smoke tests to detect.
func runRole(role string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var err error
	switch role {
	case "echo":
		err = Backend(ctx, log)
	case "corrupt":
		// Every reply has its last byte flipped.
		err = serveBackend(ctx, log, func(c net.Conn) {
			serveFrames(c, func(f []byte) { f[len(f)-1] ^= 0xff })
		})
	case "silent":
		// Reads every request and never answers.
		err = serveBackend(ctx, log, func(c net.Conn) {
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(backendIdle))
			_, _ = io.Copy(io.Discard, c)
		})
	case "exit":
		// Fails before registering: the broker refuses with
		// BACKEND_SPAWN_FAILED.
		fmt.Fprintln(os.Stderr, "soak backend: exiting on purpose")
		return 3
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak backend:", err)
		return 1
	}
	return 0
}
