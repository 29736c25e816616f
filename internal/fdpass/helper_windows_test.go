package fdpass

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/windows"
)

// The bytes of the handoff tests: the client pipelines earlyData right after
// its hello; the adopting child must find it in the pipe.
const (
	helloBytes = "HELLO"
	earlyData  = "early data pipelined after the hello"
)

// runHelper is the body of the re-executed test binary.
//
//   - "pipe-backend" reads the value of a handle the parent duplicated into
//     it from stdin and talks to the parent's pipe client on it through a
//     plain synchronous os.File.
//   - "adopt" reads a handle value from stdin and adopts it with
//     ConnFromHandle, then plays a backend (see handoff_windows_test.go). If
//     adoption fails it prints "adopt-error: <class> <closed|open>", the
//     second word saying whether the value still names a pipe.
//   - "idle" prints "ready" and waits for stdin to close, touching nothing.
func runHelper(mode string) error {
	in := bufio.NewReader(os.Stdin)
	switch mode {
	case "pipe-backend":
		return pipeBackend(in)
	case "adopt":
		return adopt(in)
	case "idle":
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, in)
		return nil
	}
	return fmt.Errorf("unknown helper mode")
}

func readHandleValue(in *bufio.Reader) (uint64, error) {
	line, err := in.ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("read handle value: %w", err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(line), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse handle value: %w", err)
	}
	return v, nil
}

func pipeBackend(in *bufio.Reader) error {
	v, err := readHandleValue(in)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(v), "handed-off pipe")
	defer f.Close()
	br := bufio.NewReader(f)
	got, err := br.ReadString('\n')
	if err != nil || got != "ping\n" {
		return fmt.Errorf("read from client: %q, %v", got, err)
	}
	if _, err := io.WriteString(f, "ack:"+got); err != nil {
		return fmt.Errorf("write to client: %w", err)
	}
	return nil
}

// adopt is a backend receiving a handed-off client: ready, then the early
// data, a read deadline that must fire (the client sends nothing until it
// has the echo), the echo, and a ping-pong.
func adopt(in *bufio.Reader) error {
	v, err := readHandleValue(in)
	if err != nil {
		return err
	}
	c, err := ConnFromHandle(windows.Handle(v))
	if err != nil {
		class := "other"
		switch {
		case errors.Is(err, ErrNotAdoptable):
			class = "not-adoptable"
		case errors.Is(err, ErrNotPipeServer):
			class = "not-pipe-server"
		}
		// The value may name something else by now; never close it here.
		state := "closed"
		if ft, err := windows.GetFileType(windows.Handle(v)); err == nil && ft == windows.FILE_TYPE_PIPE {
			state = "open"
		}
		fmt.Printf("adopt-error: %s %s (%v)\n", class, state, err)
		return nil
	}
	defer c.Close()
	fmt.Println("adopted")
	deadline := time.Now().Add(30 * time.Second)
	_ = c.SetDeadline(deadline)
	if _, err := io.WriteString(c, "ready"); err != nil {
		return fmt.Errorf("write ready: %w", err)
	}
	early := make([]byte, len(earlyData))
	if _, err := io.ReadFull(c, early); err != nil || string(early) != earlyData {
		return fmt.Errorf("early data: %q, %v", early, err)
	}
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("read with a deadline and nothing to read: %d, %v; want a timeout", n, err)
	}
	_ = c.SetReadDeadline(deadline)
	if _, err := io.WriteString(c, "echo:"+string(early)); err != nil {
		return fmt.Errorf("write echo: %w", err)
	}
	ping := make([]byte, 4)
	if _, err := io.ReadFull(c, ping); err != nil || string(ping) != "ping" {
		return fmt.Errorf("ping: %q, %v", ping, err)
	}
	if _, err := io.WriteString(c, "pong"); err != nil {
		return fmt.Errorf("write pong: %w", err)
	}
	return nil
}
