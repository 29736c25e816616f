package fdpass

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/Microsoft/go-winio"
	"golang.org/x/sys/windows"
)

// pipePair creates a named pipe server instance (a plain synchronous handle,
// not bound to any completion port, so another process can use it) and a
// client connected to it, with deadlines. The server handle is the test's
// to close; if the test does not, cleanup does. (Closing it twice would
// close whatever took the value over meanwhile, such as one of the
// runtime's event handles.)
func pipePair(t *testing.T) (*serverEnd, io.ReadWriteCloser) {
	t.Helper()
	name := fmt.Sprintf(`\\.\pipe\portier-fdpass-test-%d-%s`, os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-"))
	name16, err := windows.UTF16PtrFromString(name)
	if err != nil {
		t.Fatal(err)
	}
	server, err := windows.CreateNamedPipe(name16, windows.PIPE_ACCESS_DUPLEX,
		windows.PIPE_TYPE_BYTE|windows.PIPE_READMODE_BYTE|windows.PIPE_WAIT, 1, 4096, 4096, 0, nil)
	if err != nil {
		t.Fatalf("CreateNamedPipe: %v", err)
	}
	end := &serverEnd{h: server}
	t.Cleanup(func() { _ = end.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := winio.DialPipeContext(ctx, name)
	if err != nil {
		t.Fatalf("dial pipe: %v", err)
	}
	t.Cleanup(func() { _ = client.Close() })
	if err := windows.ConnectNamedPipe(server, nil); err != nil && !errors.Is(err, windows.ERROR_PIPE_CONNECTED) {
		t.Fatalf("ConnectNamedPipe: %v", err)
	}
	_ = client.SetDeadline(time.Now().Add(30 * time.Second))
	return end, client
}

// serverEnd is a pipe server handle that is closed once.
type serverEnd struct{ h windows.Handle }

func (e *serverEnd) Close() error {
	if e.h == 0 {
		return nil
	}
	h := e.h
	e.h = 0
	return windows.CloseHandle(h)
}

// TestDuplicateIntoChild duplicates the server end of a connected named pipe
// into a real child process (this test binary re-executed), closes the
// parent's copy, and checks that the child talks to the original client on
// the handle value it was given.
func TestDuplicateIntoChild(t *testing.T) {
	server, client := pipePair(t)

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=pipe-backend")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := false
	defer func() {
		if !waited {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()

	v, err := DuplicateInto(uint32(cmd.Process.Pid), server.h)
	if err != nil {
		t.Fatalf("DuplicateInto: %v", err)
	}
	// The sender's copy goes away before the child even knows the value.
	if err := server.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(stdin, "%d\n", v); err != nil {
		t.Fatal(err)
	}
	_ = stdin.Close()

	if _, err := io.WriteString(client, "ping\n"); err != nil {
		t.Fatal(err)
	}
	got, err := bufio.NewReader(client).ReadString('\n')
	if err != nil || got != "ack:ping\n" {
		t.Fatalf("client read %q, %v (child: %s)", got, err, stderr.String())
	}
	waited = true
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v\n%s", err, stderr.String())
	}
}

// TestCloseInTarget duplicates the server end into this process, closes the
// original, then reclaims the duplicate with CloseInTarget: with no server
// handle left, the client's read ends.
func TestCloseInTarget(t *testing.T) {
	server, client := pipePair(t)
	self := uint32(os.Getpid())
	v, err := DuplicateInto(self, server.h)
	if err != nil {
		t.Fatalf("DuplicateInto: %v", err)
	}
	if err := server.Close(); err != nil {
		t.Fatal(err)
	}
	if err := CloseInTarget(self, v); err != nil {
		t.Fatalf("CloseInTarget: %v", err)
	}
	n, err := client.Read(make([]byte, 1))
	if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("client read after reclaim: %d, %v; want end of pipe", n, err)
	}
	// Never CloseInTarget the same value twice: the process may already
	// have reused it (the Go runtime does, for its own event handles).
}

func TestDuplicateErrors(t *testing.T) {
	_, err := DuplicateInto(0, windows.CurrentProcess())
	var de *Error
	if !errors.Is(err, ErrOpenProcess) || !errors.As(err, &de) || de.Op != "OpenProcess" {
		t.Errorf("pid 0: %v", err)
	}
	if err := CloseInTarget(0, 4); !errors.Is(err, ErrOpenProcess) {
		t.Errorf("CloseInTarget pid 0: %v", err)
	}
	_, err = DuplicateInto(uint32(os.Getpid()), windows.Handle(0x7ffffff0))
	if !errors.Is(err, ErrDuplicateFailed) || errors.Is(err, ErrOpenProcess) {
		t.Errorf("bad handle: %v", err)
	}
}

func TestErrorClasses(t *testing.T) {
	err := newError("OpenProcess", 42, windows.ERROR_ACCESS_DENIED, ErrOpenProcess, false)
	for _, want := range []error{ErrOpenProcess, ErrAccessDenied, windows.ERROR_ACCESS_DENIED} {
		if !errors.Is(err, want) {
			t.Errorf("not %v: %v", want, err)
		}
	}
	if errors.Is(err, ErrDuplicateFailed) {
		t.Error("OpenProcess failure classified as DuplicateHandle failure")
	}
	err = newError("DuplicateHandle", 42, windows.ERROR_INVALID_HANDLE, ErrDuplicateFailed, false)
	if !errors.Is(err, ErrDuplicateFailed) || errors.Is(err, ErrAccessDenied) {
		t.Errorf("classes: %v", err)
	}
	if !strings.Contains(err.Error(), "42") {
		t.Errorf("message lacks pid: %q", err)
	}
}
