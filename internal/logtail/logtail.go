// Package logtail reads the end of the log files portier keeps (a
// backend's output, the broker's --log-file): the last lines, bounded and
// valid UTF-8, for error messages that say what a failed process printed;
// and following a log as it grows, across the two ways portier keeps logs
// under their cap (a log renamed to FILE.1 before a backend starts, and a
// log whose newer half is copied to FILE.1 and which is then truncated in
// place while its writer keeps it open).
package logtail

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"
)

// Lines returns the last n lines of the file at path, read from at most
// its last limit bytes, without the final newline. A first line that the
// limit cut is dropped (unless it is the only one). Invalid UTF-8 is
// replaced with U+FFFD, so the text can travel in a protobuf string and be
// printed as is. A file that cannot be read returns "" and the error.
func Lines(path string, n int, limit int64) (string, error) {
	f, err := Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	return LinesAt(f, fi.Size(), n, limit)
}

// LinesAt is Lines on the first size bytes of r, a log already open: a
// caller that goes on from size (Follow) reads every byte once.
func LinesAt(r io.ReaderAt, size int64, n int, limit int64) (string, error) {
	off := max(size-limit, 0)
	buf, err := io.ReadAll(io.NewSectionReader(r, off, size-off))
	if err != nil {
		return "", err
	}
	return lastLines(buf, n, off > 0), nil
}

// lastLines is Lines on bytes already read; cut says whether they start in
// the middle of the file.
func lastLines(buf []byte, n int, cut bool) string {
	buf = bytes.TrimRight(buf, "\n")
	if len(buf) == 0 || n <= 0 {
		return ""
	}
	lines := bytes.Split(buf, []byte("\n"))
	if cut && len(lines) > 1 {
		lines = lines[1:] // the first line is probably not whole
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return validUTF8(bytes.Join(lines, []byte("\n")))
}

// LastLine returns the last non-empty line of the file at path, trimmed of
// surrounding white space, from its last 4 KiB: usually what a process
// said last before it failed. It is "" when the file cannot be read.
func LastLine(path string) string {
	text, err := Lines(path, 1<<20, 4<<10)
	if err != nil {
		return ""
	}
	return LastNonEmpty(text)
}

// LastNonEmpty returns the last line of text that is not blank, trimmed
// of surrounding white space.
func LastNonEmpty(text string) string {
	for text != "" {
		i := strings.LastIndexByte(text, '\n')
		if line := strings.TrimSpace(text[i+1:]); line != "" {
			return line
		}
		if i < 0 {
			break
		}
		text = text[:i]
	}
	return ""
}

func validUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return string(bytes.ToValidUTF8(b, []byte("\uFFFD")))
}

// DefaultPoll is how often Follow looks for new output.
const DefaultPoll = 250 * time.Millisecond

// Follow copies to w what is appended to the file at path from offset
// from on, until ctx ends (then it returns nil). It looks for new output
// every poll (DefaultPoll when poll <= 0). It survives the log being
// rotated (renamed away and created anew: it finishes the old file, then
// reads the new one from its start), truncated in place (it reads again
// from the start), or missing for a while (it waits for it). Other errors
// (w failing) end it.
func Follow(ctx context.Context, path string, from int64, w io.Writer, poll time.Duration) error {
	if poll <= 0 {
		poll = DefaultPoll
	}
	fl := &follower{path: path, off: from, w: w, buf: make([]byte, 32<<10)}
	defer fl.close()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := fl.step(); err != nil {
			return err
		}
		t.Reset(poll)
	}
}

// follower is Follow's state: the file being read and how far.
type follower struct {
	path string
	f    *os.File // nil while the log is missing
	fi   os.FileInfo
	off  int64
	w    io.Writer
	buf  []byte
}

func (fl *follower) close() {
	if fl.f != nil {
		fl.f.Close()
	}
}

// step copies what is new, then notices a rotation or truncation.
func (fl *follower) step() error {
	if fl.f == nil {
		f, err := Open(fl.path)
		if err != nil {
			return nil // not there (yet, or between a rename and a create)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil
		}
		fl.f, fl.fi = f, fi
		if fl.off > fi.Size() {
			fl.off = 0 // truncated while it was not open
		}
	}
	if err := fl.drain(); err != nil {
		return err
	}
	cur, err := os.Stat(fl.path)
	switch {
	case err != nil || !os.SameFile(cur, fl.fi):
		// Renamed away (rotation): what was appended before the rename
		// was just read; the new file is read from its start once it
		// exists.
		fl.f.Close()
		fl.f, fl.off = nil, 0
		if err == nil {
			return fl.step()
		}
	case cur.Size() < fl.off:
		// Truncated in place: its writer goes on at the new end, so
		// read again from the start.
		fl.off = 0
		return fl.drain()
	}
	return nil
}

// drain copies the open file from fl.off to its current end.
func (fl *follower) drain() error {
	for {
		n, err := fl.f.ReadAt(fl.buf, fl.off)
		if n > 0 {
			if _, werr := fl.w.Write(fl.buf[:n]); werr != nil {
				return werr
			}
			fl.off += int64(n)
		}
		if errors.Is(err, io.EOF) || n == 0 {
			return nil
		}
		if err != nil {
			return nil // a read error now is a rotation or truncation in progress; look again next time
		}
	}
}
