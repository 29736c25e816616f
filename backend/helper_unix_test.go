//go:build linux || darwin

package backend

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// runHelper is the body of a helper process. Mode "dial" connects to the
// socket named by its argument and reports on stdout what the server did
// with the connection: "eof" when it was closed, "data" when bytes arrived,
// or the error (a timeout when the server kept it open).
func runHelper(mode string, args []string) int {
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
