package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// brokerLogCap caps the broker's --log-file, as backend logs are capped.
const brokerLogCap = 1 << 20

// cappedLog is the broker's --log-file. When a write would take the file
// past its limit, the newest half is copied to FILE.1 and FILE is emptied
// in place. It copies and truncates rather than renames because other
// descriptors write to the same file: a client that auto-starts the broker
// points the broker's stderr there too, so early errors and crashes land
// in the file a user is told to read, and a rename would leave those
// descriptors writing to FILE.1.
type cappedLog struct {
	mu    sync.Mutex
	f     *os.File
	path  string
	limit int64
	size  int64 // what this process believes; refreshed from the file before rotating
}

// openCappedLog opens path for appending (creating it 0600, and missing
// directories 0700, refusing a symbolic link) and rotates it at once when
// it is already over limit. Creating the directory matters at login: the
// LaunchAgent logs beside the socket, under /tmp, before anything else
// has made that directory.
func openCappedLog(path string, limit int64) (*cappedLog, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("--log-file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|oNoFollow, 0o600)
	if err != nil {
		return nil, fmt.Errorf("--log-file: %w", err)
	}
	l := &cappedLog{f: f, path: path, limit: limit}
	if fi, err := f.Stat(); err == nil {
		l.size = fi.Size()
	}
	if l.size > limit {
		l.mu.Lock()
		l.rotateLocked()
		l.mu.Unlock()
	}
	return l, nil
}

// Write appends p, rotating first when p would not fit under the limit.
func (l *cappedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.size+int64(len(p)) > l.limit {
		if fi, err := l.f.Stat(); err == nil {
			l.size = fi.Size()
		}
		if l.size+int64(len(p)) > l.limit {
			l.rotateLocked()
		}
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	return n, err
}

// rotateLocked keeps the newest half of the limit in path.1 and empties
// the file.
func (l *cappedLog) rotateLocked() {
	if r, err := os.Open(l.path); err == nil {
		if fi, err := r.Stat(); err == nil {
			keep := l.limit / 2
			off := max(fi.Size()-keep, 0)
			if tail, err := io.ReadAll(io.NewSectionReader(r, off, fi.Size()-off)); err == nil {
				_ = os.WriteFile(l.path+".1", tail, 0o600)
			}
		}
		r.Close()
	}
	if err := l.f.Truncate(0); err == nil {
		l.size = 0
	}
}

// Close closes the file.
func (l *cappedLog) Close() error { return l.f.Close() }
