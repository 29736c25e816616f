package ipc

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/windows"
)

// clientTestWait bounds every wait of the ClientPipe tests; it detects
// hangs and never measures speed.
const clientTestWait = 10 * time.Second

// heldInstance creates an instance of pipe name (a byte pipe, any number of
// instances) and, when connect is set, connects a client to it, so that it
// is no longer listening: a pipe with only such instances is one nobody
// listens on, as a broker's pipe is after the broker exited while backends
// hold instances it handed them.
func heldInstance(t *testing.T, name string, connect bool) windows.Handle {
	t.Helper()
	name16, err := windows.UTF16PtrFromString(name)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := windows.CreateNamedPipe(name16, windows.PIPE_ACCESS_DUPLEX,
		windows.PIPE_TYPE_BYTE|windows.PIPE_READMODE_BYTE|windows.PIPE_WAIT,
		windows.PIPE_UNLIMITED_INSTANCES, 4096, 4096, 0, nil)
	if err != nil {
		t.Fatalf("CreateNamedPipe: %v", err)
	}
	t.Cleanup(func() { _ = windows.CloseHandle(srv) })
	if connect {
		cli, err := windows.CreateFile(name16, windows.GENERIC_READ|windows.GENERIC_WRITE, 0, nil,
			windows.OPEN_EXISTING, 0, 0)
		if err != nil {
			t.Fatalf("connect to the instance: %v", err)
		}
		t.Cleanup(func() { _ = windows.CloseHandle(cli) })
	}
	return srv
}

func setClientPipeBusyHook(t *testing.T, fn func()) {
	testHookClientPipeBusy = fn
	t.Cleanup(func() { testHookClientPipeBusy = nil })
}

func TestDialPipeDeadlineNotFound(t *testing.T) {
	_, err := DialPipeDeadline(t.Context(), pipeName(t), time.Now().Add(clientTestWait))
	if !errors.Is(err, os.ErrNotExist) || !errors.Is(err, windows.ERROR_FILE_NOT_FOUND) || errors.Is(err, ErrNotListening) {
		t.Fatalf("got %v, want os.ErrNotExist (ERROR_FILE_NOT_FOUND)", err)
	}
}

// TestDialPipeDeadlineNotListening: a pipe that exists with every instance
// held is reported as ErrNotListening once no instance came free for a
// while, and as a timeout when the deadline comes first.
func TestDialPipeDeadlineNotListening(t *testing.T) {
	name := pipeName(t)
	heldInstance(t, name, true)
	busy := 0
	setClientPipeBusyHook(t, func() { busy++ })
	_, err := DialPipeDeadline(t.Context(), name, time.Now().Add(clientTestWait))
	if !errors.Is(err, ErrNotListening) || !errors.Is(err, windows.ERROR_PIPE_BUSY) {
		t.Fatalf("got %v, want ErrNotListening", err)
	}
	if busy < 2 {
		t.Fatalf("waited for an instance %d times, want it to keep waiting", busy)
	}
	_, err = DialPipeDeadline(t.Context(), name, time.Now().Add(pipeBusySlice))
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.Is(err, windows.ERROR_PIPE_BUSY) || errors.Is(err, ErrNotListening) {
		t.Fatalf("with a deadline shorter than the listening wait: %v, want os.ErrDeadlineExceeded", err)
	}
}

// TestDialPipeDeadlineWaitsForInstance: while every instance is busy the
// dial waits, and takes the instance that comes free.
func TestDialPipeDeadlineWaitsForInstance(t *testing.T) {
	name := pipeName(t)
	heldInstance(t, name, true)
	var srv windows.Handle
	setClientPipeBusyHook(t, func() {
		if srv == 0 {
			srv = heldInstance(t, name, false)
		}
	})
	c, err := DialPipeDeadline(t.Context(), name, time.Now().Add(clientTestWait))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if srv == 0 {
		t.Fatal("the dial never found the pipe busy")
	}
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	var n uint32
	if err := windows.ReadFile(srv, buf, &n, nil); err != nil || string(buf[:n]) != "hi" {
		t.Fatalf("the new instance read %q, %v", buf[:n], err)
	}
}

// TestDialPipeDeadlineContext: ctx ends the wait for a busy pipe.
func TestDialPipeDeadlineContext(t *testing.T) {
	name := pipeName(t)
	heldInstance(t, name, true)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	setClientPipeBusyHook(t, cancel)
	_, err := DialPipeDeadline(ctx, name, time.Now().Add(clientTestWait))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

// clientPair returns a ClientPipe and the server end it is connected to.
func clientPair(t *testing.T) (*ClientPipe, net.Conn) {
	t.Helper()
	name := pipeName(t)
	l, err := ListenPipe(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		s, _ := l.Accept()
		accepted <- s
	}()
	c, err := DialPipeDeadline(t.Context(), name, time.Now().Add(clientTestWait))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { _ = s.Close() })
	return c, s
}

func TestClientPipeConn(t *testing.T) {
	c, s := clientPair(t)
	if a := c.RemoteAddr(); a.Network() != "pipe" || a.String() != c.name {
		t.Errorf("remote address %s %q", a.Network(), a)
	}
	if n, err := c.Buffered(); n != 0 || err != nil {
		t.Fatalf("Buffered on an empty pipe: %d, %v", n, err)
	}
	if _, err := s.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	// A write to a pipe with room in its buffer is there when it returns.
	if n, err := c.Buffered(); n != 5 || err != nil {
		t.Fatalf("Buffered after the server wrote 5 bytes: %d, %v", n, err)
	}
	b := make([]byte, 5)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "hello" {
		t.Fatalf("read %q, %v", b, err)
	}
	if n, err := c.Read(nil); n != 0 || err != nil {
		t.Fatalf("empty read: %d, %v", n, err)
	}
	if _, err := c.Write([]byte("back")); err != nil {
		t.Fatal(err)
	}
	_ = s.SetReadDeadline(time.Now().Add(clientTestWait))
	if _, err := io.ReadFull(s, b[:4]); err != nil || string(b[:4]) != "back" {
		t.Fatalf("server read %q, %v", b[:4], err)
	}

	for _, half := range []func() error{c.CloseWrite, c.CloseRead} {
		if err := half(); !errors.Is(err, errors.ErrUnsupported) || !errors.Is(err, ErrUnsupported) {
			t.Errorf("half-close: %v, want errors.ErrUnsupported", err)
		}
	}

	// A read deadline interrupts a read and is reported as such.
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := c.Read(b); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	_ = c.SetReadDeadline(time.Time{})

	// The raw handle is reachable without side effects.
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var h uintptr
	if err := rc.Control(func(fd uintptr) { h = fd }); err != nil || h != c.Fd() || h == 0 {
		t.Fatalf("Control saw handle %#x (%v), Fd is %#x", h, err, c.Fd())
	}
	if err := rc.Read(func(uintptr) bool { return true }); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("raw Read: %v", err)
	}

	// The server closes: what it wrote first is still read, then EOF.
	if _, err := s.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if _, err := io.ReadFull(c, b[:3]); err != nil || string(b[:3]) != "bye" {
		t.Fatalf("read after the server closed: %q, %v", b[:3], err)
	}
	if _, err := c.Read(b); err != io.EOF {
		t.Fatalf("read at the end: %v, want io.EOF", err)
	}
	if _, err := c.Buffered(); err != io.EOF {
		t.Fatalf("Buffered at the end: %v, want io.EOF", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v, want net.ErrClosed", err)
	}
	if _, err := c.Buffered(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Buffered after Close: %v, want net.ErrClosed", err)
	}
}

// TestClientPipeDisconnected: a server that disconnects its instance
// (DisconnectNamedPipe, where closing leaves it connected) reads as the end
// of the stream too.
func TestClientPipeDisconnected(t *testing.T) {
	c, s := clientPair(t)
	d, ok := s.(interface{ Disconnect() error })
	if !ok {
		t.Fatalf("server connection %T cannot disconnect", s)
	}
	if err := d.Disconnect(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(clientTestWait))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after the server disconnected: %v, want io.EOF", err)
	}
	if _, err := c.Buffered(); err != io.EOF {
		t.Fatalf("Buffered after the server disconnected: %v, want io.EOF", err)
	}
}

// TestClientPipeCloseInterruptsRead: Close ends a Read that waits.
func TestClientPipeCloseInterruptsRead(t *testing.T) {
	c, _ := clientPair(t)
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	// Close lands whether the Read has started waiting or not: either way
	// the Read ends with net.ErrClosed.
	_ = c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read: %v, want net.ErrClosed", err)
		}
	case <-time.After(clientTestWait):
		t.Fatal("Close did not interrupt the read")
	}
}
