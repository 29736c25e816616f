package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portier/portier/internal/ipc"
	"go.uber.org/goleak"
)

// leakOptions: go-winio runs one I/O completion goroutine for the life of
// the process, started by the first pipe opened.
var leakOptions = []goleak.Option{goleak.IgnoreAnyFunction("github.com/Microsoft/go-winio.ioCompletionProcessor")}

// pipeTestWait bounds every wait here; it detects hangs, it measures no
// speed.
const pipeTestWait = 20 * time.Second

// pipePair returns the client end (as client.Dial holds it) and the server
// end of a real named pipe.
func pipePair(t *testing.T) (*ipc.ClientPipe, net.Conn) {
	t.Helper()
	name := `\\.\pipe\portier-cmdtest-` + strconv.Itoa(os.Getpid()) + "-" + strings.ReplaceAll(t.Name(), "/", "-")
	l, err := ipc.ListenPipe(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		s, _ := l.Accept()
		accepted <- s
	}()
	c, err := ipc.DialPipeDeadline(t.Context(), name, time.Now().Add(pipeTestWait))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { _ = s.Close() })
	_ = s.SetDeadline(time.Now().Add(pipeTestWait))
	return c, s
}

// TestBridgeNamedPipe: on a real named pipe, which has no half-close,
// dial prints the backend's answer after stdin ended and returns once the
// backend is silent, closing the pipe; and a backend that closes while
// stdin is still open is a cut, as on Unix.
func TestBridgeNamedPipe(t *testing.T) {
	c, s := pipePair(t)
	peerEOF := make(chan error, 1)
	go func() {
		req := make([]byte, len("question"))
		if _, err := io.ReadFull(s, req); err != nil {
			peerEOF <- err
			return
		}
		_, _ = s.Write(append([]byte("re: "), req...))
		_, err := s.Read(make([]byte, 1))
		peerEOF <- err
	}()
	var out bytes.Buffer
	if err := bridge(c, strings.NewReader("question"), &out, 100*time.Millisecond); err != nil {
		t.Fatalf("bridge: %v", err)
	}
	if out.String() != "re: question" {
		t.Errorf("dial printed %q", out.String())
	}
	if err := <-peerEOF; err != io.EOF {
		t.Errorf("the backend read %v after dial returned, want io.EOF", err)
	}

	c, s = pipePair(t)
	stdinR, stdinW := io.Pipe()
	defer stdinW.Close()
	_ = s.Close()
	if err := bridge(c, stdinR, io.Discard, time.Hour); !errors.Is(err, errCut) {
		t.Fatalf("bridge with a backend that closed first: %v, want errCut", err)
	}
}
