//go:build unix

package ipc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// probeTimeout bounds the dial that decides whether an existing socket is
// served by a live process. Connecting to a local socket either succeeds or
// fails at once; the bound only matters for exotic filesystems.
const probeTimeout = 500 * time.Millisecond

// Listener is a Unix domain socket listener that owns its path. Close
// removes the socket file, but only if the file at the path is still the one
// this listener bound (a successor may have replaced it), and releases the
// singleton lock if there is one.
//
// Listener implements net.Listener.
type Listener struct {
	ul   *net.UnixListener
	path string
	// Identity of the socket file we bound, so that Close never removes
	// a successor's socket. The mtime guards against inode number reuse.
	dev   uint64
	ino   uint64
	mtime time.Time
	lock  *os.File // held for the listener's life; nil for Listen

	closeOnce sync.Once
	closeErr  error
}

// ListenSingleton binds the endpoint at path so that at most one process
// serves it, for example the per-user broker.
//
// It ensures path's directory is private (EnsurePrivateDir), then takes an
// exclusive flock on path+".lock" that is held until Close; a lock held by
// someone else yields ErrAlreadyRunning. Holding the lock, it looks at path:
// a socket that accepts a connection means a live server (ErrAlreadyRunning);
// a socket that refuses is stale and is removed; anything that is not a
// socket is an error. It then binds and sets the socket's mode to 0600.
//
// The lock file is never removed: deleting a lock file lets a waiter lock a
// file that is no longer the one a newcomer creates. It is close-on-exec, so
// spawned children do not keep the lock alive after the broker dies.
func ListenSingleton(path string) (*Listener, error) {
	if err := checkSocketPathLen(path); err != nil {
		return nil, err
	}
	if err := EnsurePrivateDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	lock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, err
	}
	l, err := bindPath(path)
	if err != nil {
		_ = lock.Close() // closing the only descriptor drops the flock
		return nil, err
	}
	l.lock = lock
	return l, nil
}

// Listen binds a Unix socket at path with mode 0600, replacing a stale socket
// (one nobody accepts on). A live one yields ErrAlreadyRunning. Listen is
// for endpoints whose path belongs to a single process, such as a backend's
// own endpoint; it takes no lock, so two processes racing for the same path
// must use ListenSingleton instead. The caller is responsible for placing
// path in a directory prepared by EnsurePrivateDir: the directory is what
// keeps other users away from the socket.
func Listen(path string) (*Listener, error) {
	if err := checkSocketPathLen(path); err != nil {
		return nil, err
	}
	return bindPath(path)
}

// lockFile opens (creating if needed) and exclusively flocks the lock file
// without waiting.
func lockFile(lockPath string) (*os.File, error) {
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ipc: open lock file: %w", err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("ipc: lock file: %w", err)
	}
	var lerr error
	if err := rc.Control(func(fd uintptr) {
		for {
			lerr = unix.Flock(int(fd), unix.LOCK_EX|unix.LOCK_NB)
			if lerr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		lerr = err
	}
	if lerr != nil {
		_ = f.Close()
		if errors.Is(lerr, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: lock %s is held by another process", ErrAlreadyRunning, lockPath)
		}
		return nil, fmt.Errorf("ipc: flock %s: %w", lockPath, lerr)
	}
	return f, nil
}

// bindPath clears a stale socket at path, binds, chmods to 0600 and records
// the identity of the socket file so Close can tell it is still ours.
func bindPath(path string) (*Listener, error) {
	if err := clearStale(path); err != nil {
		return nil, err
	}
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			// Someone bound between our check and our bind.
			return nil, fmt.Errorf("%w: %s was bound by another process meanwhile", ErrAlreadyRunning, path)
		}
		return nil, fmt.Errorf("ipc: listen: %w", err)
	}
	// We remove the file ourselves, and only if it is still ours.
	ul.SetUnlinkOnClose(false)
	l := &Listener{ul: ul, path: path}
	// See the package comment for why chmod-after-bind is safe.
	err = os.Chmod(path, 0o600)
	if err == nil {
		var fi os.FileInfo
		if fi, err = os.Lstat(path); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				l.dev, l.ino, l.mtime = uint64(st.Dev), uint64(st.Ino), fi.ModTime()
			} else {
				err = errors.New("no inode information")
			}
		}
	}
	if err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("ipc: prepare socket %s: %w", path, err)
	}
	return l, nil
}

// clearStale removes a socket at path that nobody serves.
func clearStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ipc: check socket path: %w", err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("ipc: %s exists and is %s, not a socket; remove it and retry", path, fileKind(fi.Mode()))
	}
	live, err := probe(path)
	if err != nil {
		return err
	}
	if live {
		return fmt.Errorf("%w: %s accepts connections", ErrAlreadyRunning, path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ipc: remove stale socket: %w", err)
	}
	return nil
}

// probe reports whether a process accepts connections on the socket at path.
func probe(path string) (bool, error) {
	d := net.Dialer{Timeout: probeTimeout}
	c, err := d.Dial("unix", path)
	if err == nil {
		_ = c.Close()
		return true, nil
	}
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, fs.ErrNotExist):
		return false, nil
	case errors.Is(err, syscall.EAGAIN), errors.As(err, &ne) && ne.Timeout():
		// A full backlog or a slow accept: the server is alive.
		return true, nil
	default:
		return false, fmt.Errorf("ipc: probe existing socket %s: %w", path, err)
	}
}

// Accept waits for and returns the next connection (a *net.UnixConn).
func (l *Listener) Accept() (net.Conn, error) { return l.ul.AcceptUnix() }

// AcceptUnix is Accept with the concrete type, ready for PeerCred.
func (l *Listener) AcceptUnix() (*net.UnixConn, error) { return l.ul.AcceptUnix() }

// WaitPending blocks until a connection is queued for AcceptUnix, without
// accepting it, or until the listener is closed (an error matching
// net.ErrClosed, seen within pendingPoll). A process out of descriptors
// needs it: accept fails then whether or not a connection is queued (the
// descriptor is allocated first), so it can tell when to free a descriptor
// it holds in reserve only by waiting here.
//
// It polls on its own thread: Go's poller does not wait for readiness on a
// listener except inside Accept.
func (l *Listener) WaitPending() error {
	for {
		pending, err := l.poll(pendingPoll)
		if err != nil || pending {
			return err
		}
	}
}

// Pending reports, without waiting and without accepting, whether a
// connection is queued for AcceptUnix.
func (l *Listener) Pending() (bool, error) { return l.poll(0) }

// poll waits at most d for a queued connection.
func (l *Listener) poll(d time.Duration) (bool, error) {
	rc, err := l.ul.SyscallConn()
	if err != nil {
		return false, err
	}
	var (
		pending bool
		perr    error
	)
	err = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(d/time.Millisecond))
		switch {
		case errors.Is(err, unix.EINTR):
		case err != nil:
			perr = fmt.Errorf("ipc: poll listener: %w", err)
		default:
			pending = n > 0
		}
	})
	if err != nil {
		return false, err
	}
	return pending, perr
}

// StopNewClients removes the socket file, if this listener owns it and it
// is still the one it bound, so that no new client can connect while the
// clients already queued can still be accepted. It reports whether it
// removed the file: a listener that does not own its path (adopted from a
// service manager) leaves the file, and its queue, to the next server.
// Close then has no file left to remove; it still releases the lock, which
// keeps a successor from binding the path meanwhile.
func (l *Listener) StopNewClients() (bool, error) {
	if !l.stillOurs() {
		return false, nil
	}
	if err := os.Remove(l.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("ipc: remove socket: %w", err)
	}
	return true, nil
}

// pendingPoll is how long one poll of WaitPending waits before it looks
// whether the listener was closed.
const pendingPoll = 100 * time.Millisecond

// Addr returns the listener's address.
func (l *Listener) Addr() net.Addr { return l.ul.Addr() }

// Path returns the filesystem path of the socket.
func (l *Listener) Path() string { return l.path }

// SetDeadline sets the deadline for Accept; the zero time means none.
func (l *Listener) SetDeadline(t time.Time) error { return l.ul.SetDeadline(t) }

// AcceptQueued accepts, without waiting, every connection already queued
// on the socket, for a server that is closing it (after StopNewClients, so
// that no more arrive) and would otherwise reset them. Call it while no
// Accept runs.
func (l *Listener) AcceptQueued() ([]*net.UnixConn, error) {
	rc, err := l.ul.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("ipc: accept queued: %w", err)
	}
	var fds []int
	var aerr error
	if err := rc.Control(func(s uintptr) {
		for {
			// accept and close-on-exec under ForkLock, as package net does
			// where accept4 is missing (macOS): no child inherits fd. The
			// listening socket is non-blocking, so an empty queue is EAGAIN.
			syscall.ForkLock.RLock()
			fd, _, err := syscall.Accept(int(s))
			if err == nil {
				syscall.CloseOnExec(fd)
			}
			syscall.ForkLock.RUnlock()
			switch {
			case err == syscall.EINTR || err == syscall.ECONNABORTED:
				continue
			case err == syscall.EAGAIN:
				return
			case err != nil:
				aerr = os.NewSyscallError("accept", err)
				return
			}
			fds = append(fds, fd)
		}
	}); err != nil {
		aerr = err
	}
	conns := make([]*net.UnixConn, 0, len(fds))
	for _, fd := range fds {
		f := os.NewFile(uintptr(fd), "queued")
		c, err := net.FileConn(f)
		_ = f.Close()
		if err != nil {
			aerr = errors.Join(aerr, err)
			continue
		}
		conns = append(conns, c.(*net.UnixConn))
	}
	if aerr != nil {
		return conns, fmt.Errorf("ipc: accept queued: %w", aerr)
	}
	return conns, nil
}

// Close stops accepting, removes the socket file if it is still the one this
// listener bound, and releases the singleton lock. It is safe to call more
// than once; later calls return the first result.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		l.closeErr = l.ul.Close()
		if l.stillOurs() {
			if err := os.Remove(l.path); err != nil && !errors.Is(err, fs.ErrNotExist) && l.closeErr == nil {
				l.closeErr = fmt.Errorf("ipc: remove socket: %w", err)
			}
		}
		// Remove the socket before unlocking, so that the next owner
		// never sees our dead socket while holding the lock.
		if l.lock != nil {
			if err := l.lock.Close(); err != nil && l.closeErr == nil {
				l.closeErr = fmt.Errorf("ipc: release lock: %w", err)
			}
		}
	})
	return l.closeErr
}

func (l *Listener) stillOurs() bool {
	if l.ino == 0 {
		return false
	}
	fi, err := os.Lstat(l.path)
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && uint64(st.Dev) == l.dev && uint64(st.Ino) == l.ino && fi.ModTime().Equal(l.mtime)
}

// Dial connects to the Unix socket at path. The dial is bounded by ctx's
// deadline, or by DefaultDialTimeout when ctx has none.
func Dial(ctx context.Context, path string) (*net.UnixConn, error) {
	if err := checkSocketPathLen(path); err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultDialTimeout)
		defer cancel()
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("ipc: dial: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		_ = c.Close()
		return nil, fmt.Errorf("ipc: dial %s: unexpected connection type %T", path, c)
	}
	return uc, nil
}
