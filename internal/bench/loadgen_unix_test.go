//go:build unix

package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// echoListener serves an echo on a Unix socket until the test ends.
func echoListener(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "echo.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_, _ = io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return path
}

// clientSession runs ClientMain with args, answering its warm/done lines
// like the bench does, and returns the lines it printed.
func clientSession(t *testing.T, args ...string) ([]string, error) {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		err := ClientMain(args, inR, outW, io.Discard)
		outW.CloseWithError(io.EOF)
		errc <- err
	}()
	var lines []string
	sc := bufio.NewScanner(outR)
	for sc.Scan() {
		l := sc.Text()
		lines = append(lines, l)
		switch l {
		case lineWarm:
			io.WriteString(inW, lineGo+"\n")
		case lineDone:
			io.WriteString(inW, lineReport+"\n")
		}
	}
	inW.Close()
	return lines, <-errc
}

func TestClientMainRoundTrips(t *testing.T) {
	pipe := echoListener(t)
	lines, err := clientSession(t, "--strategy", "direct", "--pipe", pipe, "--mode", "rtt", "--conns", "40", "--concurrency", "4", "--warmup", "5")
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 3 || lines[0] != lineWarm || lines[1] != lineDone {
		t.Fatalf("client printed %q, want warm, done and one result", lines)
	}
	var r RTTResult
	if err := json.Unmarshal([]byte(lines[2]), &r); err != nil {
		t.Fatal(err)
	}
	if r.N != 40 || r.Errors != 0 || r.Routes["direct"] != 40 || r.P50NS <= 0 || r.P50NS > r.P99NS || r.P99NS > r.MaxNS || r.ElapsedNS <= 0 {
		t.Errorf("result %+v", r)
	}
}

func TestClientMainStream(t *testing.T) {
	pipe := echoListener(t)
	lines, err := clientSession(t, "--strategy", "proxy", "--pipe", pipe, "--mode", "stream", "--duration", "20ms", "--warmup", "1")
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 3 {
		t.Fatalf("client printed %q", lines)
	}
	var r StreamResult
	if err := json.Unmarshal([]byte(lines[2]), &r); err != nil {
		t.Fatal(err)
	}
	if r.Written <= 0 || r.Read != r.Written || r.Route != "proxy" {
		t.Errorf("result %+v", r)
	}
}

func TestClientMainUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--strategy", "teleport", "--socket", "s"},
		{"--strategy", "direct"},  // no --pipe
		{"--strategy", "handoff"}, // no --socket
		{"--strategy", "direct", "--pipe", "p", "--conns", "0"},
		{"--mode", "sing", "--socket", "s"},
		{"--no-such-flag"},
	} {
		err := ClientMain(args, strings.NewReader(""), io.Discard, io.Discard)
		var ue *UsageError
		if !errors.As(err, &ue) {
			t.Errorf("ClientMain(%q) = %v, want a *UsageError", args, err)
		}
	}
}
