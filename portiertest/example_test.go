package portiertest_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/portier/portier/backend"
	"github.com/portier/portier/portiertest"
	"go.uber.org/goleak"
	"testing"
)

// TestMain gives this test binary its backend roles before running the
// tests: when a portiertest broker starts the binary as the "echo"
// backend, BackendMain runs serveEcho and exits.
func TestMain(m *testing.M) {
	portiertest.BackendMain(map[string]func(context.Context) error{
		"echo":  serveEcho,
		"upper": serveUpper,
	})
	// A race-enabled binary sleeps 1 s at exit by default; every backend
	// stop would wait for it.
	if g := os.Getenv("GORACE"); !strings.Contains(g, "atexit_sleep_ms") {
		os.Setenv("GORACE", strings.TrimSpace(g+" atexit_sleep_ms=0"))
	}
	goleak.VerifyTestMain(m, leakOptions...)
}

// serveEcho is a portier backend that echoes each connection back.
func serveEcho(ctx context.Context) error { return serve(ctx, func(c net.Conn) { io.Copy(c, c) }) }

// serveUpper answers each line with the line in upper case.
func serveUpper(ctx context.Context) error {
	return serve(ctx, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if _, err := io.WriteString(c, strings.ToUpper(line)); err != nil {
				return
			}
		}
	})
}

func serve(ctx context.Context, handle func(net.Conn)) error {
	l, err := backend.Listen(ctx)
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, func() { l.Close() })
	for c, err := l.Accept(); err == nil; c, err = l.Accept() {
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(time.Minute))
			handle(c)
		}()
	}
	// The listener stopped (the broker asked us to quiesce): let the
	// connections in progress finish.
	return l.Shutdown(context.Background())
}

// A test starts a broker with the services it needs, here this test
// binary in its "echo" role (see TestMain), and dials through it. In a
// test, portiertest.NewBroker(t, ...) does the same and stops everything
// when the test ends.
func Example() {
	b, err := portiertest.StartBroker(nil, portiertest.Service{Name: "echo", Role: "echo"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := b.Dial(ctx, "echo")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	const msg = "hello through portier"
	io.WriteString(c, msg)
	reply := make([]byte, len(msg))
	io.ReadFull(c, reply)
	fmt.Println(string(reply))
	// Output: hello through portier
}
