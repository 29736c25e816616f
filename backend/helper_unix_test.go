//go:build linux || darwin

package backend

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/portier/portier/internal/spawnenv"
	"golang.org/x/sys/unix"
)

// runHelper is the body of a helper process. Mode "environ" reports
// whether the spawn secret is in its environment. Mode "dial" connects to the
// socket named by its argument and reports on stdout what the server did
// with the connection: "eof" when it was closed, "data" when bytes arrived,
// or the error (a timeout when the server kept it open).
func runHelper(mode string, args []string) int {
	if mode == "environ" {
		// Report whether the spawn secret reached this child, by name or
		// by value (args[0], hex) under any name.
		_, named := os.LookupEnv(spawnenv.SpawnSecret)
		valued := len(args) == 1 && slices.ContainsFunc(os.Environ(), func(kv string) bool { return strings.Contains(kv, args[0]) })
		fmt.Printf("named=%v valued=%v\n", named, valued)
		return 0
	}
	if mode != "dial" || len(args) != 1 {
		fmt.Fprintf(os.Stderr, "backend test helper: unknown mode %q or arguments %q\n", mode, args)
		return 2
	}
	c, err := net.DialTimeout("unix", args[0], 5*time.Second)
	if err != nil {
		fmt.Printf("dial: %v\n", err)
		return 1
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var b [1]byte
	n, err := c.Read(b[:])
	switch {
	case n > 0:
		fmt.Println("data")
	case errors.Is(err, io.EOF), errors.Is(err, unix.ECONNRESET):
		fmt.Println("eof")
	default:
		fmt.Printf("read: %v\n", err)
	}
	return 0
}
