package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// noHalfClose is a connection that cannot be half-closed, as a named pipe
// on Windows: its CloseWrite fails with errors.ErrUnsupported (the fault
// injected into an in-memory pipe, whose deadlines run on the synctest
// clock).
type noHalfClose struct{ net.Conn }

func (noHalfClose) CloseWrite() error {
	return fmt.Errorf("close write: %w", errors.ErrUnsupported)
}

// TestBridgeWithoutHalfClose: when the connection cannot carry the end of
// stdin to the backend, dial prints what the backend sends after stdin
// ended, for as long as it keeps sending with pauses shorter than the
// eof-wait, and returns once the backend has been silent that long,
// closing the connection.
func TestBridgeWithoutHalfClose(t *testing.T) {
	const eofWait = time.Second
	for _, tc := range []struct {
		name string
		gaps []time.Duration // pauses before each answer after the first
		want string
	}{
		{"one answer", nil, "re: question"},
		{"answers with short pauses", []time.Duration{eofWait * 3 / 4, eofWait * 3 / 4}, "re: question|1|2"},
		{"a pause longer than eof-wait", []time.Duration{eofWait / 2, 2 * eofWait}, "re: question|1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a, b := net.Pipe()
				lastWrite := make(chan time.Time, 1)
				peerEOF := make(chan error, 1)
				go func() {
					defer b.Close()
					// The backend reads the request (it never sees its
					// end), answers, and answers again after each gap.
					req := make([]byte, len("question"))
					if _, err := io.ReadFull(b, req); err != nil {
						peerEOF <- err
						return
					}
					last := time.Now()
					if _, err := b.Write(append([]byte("re: "), req...)); err != nil {
						peerEOF <- err
						return
					}
					for i, gap := range tc.gaps {
						time.Sleep(gap)
						if _, err := fmt.Fprintf(b, "|%d", i+1); err != nil {
							break // dial has given up on us
						}
						last = time.Now()
					}
					lastWrite <- last
					// The backend stays open; dial must close.
					_, err := b.Read(make([]byte, 1))
					peerEOF <- err
				}()
				var out bytes.Buffer
				if err := bridge(noHalfClose{a}, strings.NewReader("question"), &out, eofWait); err != nil {
					t.Fatalf("bridge: %v", err)
				}
				ended := time.Now()
				if out.String() != tc.want {
					t.Errorf("dial printed %q, want %q", out.String(), tc.want)
				}
				if err := <-peerEOF; err != io.EOF {
					t.Errorf("the backend read %v after dial returned, want io.EOF (dial closed the connection)", err)
				}
				if silent := ended.Sub(<-lastWrite); silent != eofWait {
					t.Errorf("dial returned %v after the last answer, want the eof-wait %v", silent, eofWait)
				}
			})
		})
	}
}
