package client

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestDialRetriesFullBacklog: connecting to a Unix socket whose accept
// backlog is full fails with EAGAIN on Linux; dialEndpoint waits and retries
// within its deadline instead of reporting the broker missing.
func TestDialRetriesFullBacklog(t *testing.T) {
	dir := newDir(t)
	path := filepath.Join(dir, "busy.sock")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	// Close the descriptor through its *os.File: closing the number
	// directly would leave the File's finalizer to close it again later,
	// by then perhaps another test's descriptor.
	f := os.NewFile(uintptr(fd), "busy")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	// Fill the backlog until connect reports EAGAIN.
	var fill []net.Conn
	defer func() {
		for _, c := range fill {
			c.Close()
		}
	}()
	for i := 0; ; i++ {
		c, err := net.Dial("unix", path)
		if err != nil {
			if !isEAGAIN(err) {
				t.Fatalf("filling the backlog: %v", err)
			}
			break
		}
		fill = append(fill, c)
		if i > 64 {
			t.Skip("the backlog never filled")
		}
	}

	done := make(chan error, 1)
	go func() {
		c, err := dialEndpoint(context.Background(), path, time.Now().Add(5*time.Second))
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	// Fault injection: the busy server accepts again a little later.
	time.Sleep(30 * time.Millisecond)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if err := <-done; err != nil {
		t.Fatalf("dial to a busy but live socket: %v", err)
	}
}

func isEAGAIN(err error) bool {
	for e := err; e != nil; {
		if e == syscall.EAGAIN {
			return true
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		e = u.Unwrap()
	}
	return false
}
