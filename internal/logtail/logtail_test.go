package logtail

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func appendTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func TestLines(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.log")
	for _, c := range []struct {
		name, content string
		n             int
		limit         int64
		want          string
	}{
		{"last two", "a\nb\nc\n", 2, 100, "b\nc"},
		{"fewer than n", "a\nb\n", 5, 100, "a\nb"},
		{"no final newline", "a\nb", 1, 100, "b"},
		{"cut first line dropped", "first line\nsecond\nthird\n", 10, 14, "second\nthird"},
		{"only a cut line is kept", "a long single line\n", 10, 6, " line"},
		{"empty", "", 3, 100, ""},
		{"blank lines kept", "a\n\nb\n\n", 3, 100, "a\n\nb"},
		{"invalid UTF-8 replaced", "ok\nbad \xff\xfe end\n", 2, 100, "ok\nbad \uFFFD end"},
		{"cut inside a rune", "x\n\u00e9t\u00e9\n", 10, 5, "\uFFFDt\u00e9"},
	} {
		t.Run(c.name, func(t *testing.T) {
			write(t, path, c.content)
			got, err := Lines(path, c.n, c.limit)
			if err != nil || got != c.want {
				t.Errorf("Lines(%q, %d, %d) = %q, %v; want %q", c.content, c.n, c.limit, got, err, c.want)
			}
			if !utf8.ValidString(got) {
				t.Errorf("Lines returned invalid UTF-8 %q", got)
			}
			if int64(len(got)) > c.limit+2*int64(strings.Count(got, "\uFFFD")) {
				t.Errorf("Lines returned %d bytes from a %d-byte window", len(got), c.limit)
			}
		})
	}
	if _, err := Lines(filepath.Join(dir, "missing"), 1, 100); !os.IsNotExist(err) {
		t.Errorf("missing file: err %v, want not-exist", err)
	}
}

func TestLastLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "broker.log")
	write(t, path, "starting\n  fatal: socket busy  \n\n\n")
	if got := LastLine(path); got != "fatal: socket busy" {
		t.Errorf("LastLine = %q", got)
	}
	write(t, path, strings.Repeat("x", 8<<10)+"\nend \xff\n")
	if got := LastLine(path); got != "end \uFFFD" {
		t.Errorf("LastLine = %q", got)
	}
	if got := LastLine(path + ".missing"); got != "" {
		t.Errorf("LastLine of a missing file = %q", got)
	}
	write(t, path, "\n\n")
	if got := LastLine(path); got != "" {
		t.Errorf("LastLine of blank lines = %q", got)
	}
}

// syncBuffer is written by the follower and read by the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) take() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	b.buf.Reset()
	return s
}

// TestFollow drives Follow through what happens to a backend log: output
// appended, the log copy-truncated while its writer keeps appending, the
// log renamed to .1 and created anew, and the log missing for a while.
// The poll interval passes in a synctest bubble, so nothing sleeps.
func TestFollow(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(dir, "svc-1.0.0.log")
		write(t, path, "old line\n")
		var out syncBuffer
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- Follow(ctx, path, int64(len("old line\n")), &out, time.Second) }()
		step := func(what, want string) {
			t.Helper()
			time.Sleep(time.Second)
			synctest.Wait()
			if got := out.take(); got != want {
				t.Errorf("%s: followed %q, want %q", what, got, want)
			}
		}
		step("nothing new", "")
		appendTo(t, path, "one\ntwo\n")
		step("appended", "one\ntwo\n")

		// Copy-truncate: the writer keeps its descriptor and appends at
		// the new end.
		w, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := w.WriteString("after truncate\n"); err != nil {
			t.Fatal(err)
		}
		w.Close()
		step("truncated in place", "after truncate\n")

		// Rotation: the last lines of the old file, then the new file.
		appendTo(t, path, "last of old\n")
		if err := os.Rename(path, path+".1"); err != nil {
			t.Fatal(err)
		}
		step("renamed away", "last of old\n")
		appendTo(t, path, "first of new\n")
		step("created anew", "first of new\n")
		// Renamed and created anew between two looks: the old file is
		// finished before the new one is read.
		appendTo(t, path, "end of second\n")
		if err := os.Rename(path, path+".1"); err != nil {
			t.Fatal(err)
		}
		write(t, path, "start of third\n")
		step("rotated between looks", "end of second\nstart of third\n")

		// Missing for a while, then back.
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		step("missing", "")
		write(t, path, "back\n")
		step("back", "back\n")

		cancel()
		if err := <-done; err != nil {
			t.Errorf("Follow after cancel: %v", err)
		}
	})
}

// TestFollowWriterError: a writer that fails (stdout closed) ends Follow
// with its error.
func TestFollowWriterError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.log")
	write(t, path, "line\n")
	err := Follow(t.Context(), path, 0, failWriter{}, time.Millisecond)
	if err != errWrite {
		t.Errorf("Follow = %v, want the writer's error", err)
	}
}

var errWrite = os.ErrClosed

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errWrite }
