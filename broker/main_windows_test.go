package broker

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/portier/portier/backend"
	"go.uber.org/goleak"
)

// roleEnv makes the re-executed test binary act as a backend (or another
// helper process) instead of running tests.
const roleEnv = "PTEST_ROLE"

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
	}
	// go-winio (the backends' and the test clients' pipes) keeps one
	// completion-port goroutine for the life of the process by design.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/Microsoft/go-winio.ioCompletionProcessor"))
}

// runRole is the body of a helper process.
func runRole(role string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch role {
	case "echo":
		return runEcho(ctx)
	case "fail":
		fmt.Fprintln(os.Stderr, "starting up")
		fmt.Fprintln(os.Stderr, "fatal: the database file is locked")
		return 1
	}
	if run := winRoles[role]; run != nil {
		return run(ctx)
	}
	fmt.Fprintln(os.Stderr, "unknown role", role)
	return 2
}

// runEcho is a portier backend (package backend) that echoes every
// connection, handed off or direct.
func runEcho(ctx context.Context) int {
	l, err := backend.Listen(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo role:", err)
		return 1
	}
	go func() { <-ctx.Done(); l.Close() }()
	for {
		c, err := l.Accept()
		if err != nil {
			return 0
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
	}
}
