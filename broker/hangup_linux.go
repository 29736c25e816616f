//go:build linux

package broker

import (
	"errors"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// epollHangups is the hangup watch on Linux: one epoll set holding the
// socket of every parked Hello, edge-triggered for EPOLLRDHUP (EPOLLHUP and
// EPOLLERR are always reported). Its descriptor sits in the runtime's
// poller, so one goroutine waits for all of them without a thread of its
// own. A client that closes its socket raises EPOLLHUP even when it
// pipelined early data after its Hello, which a peek at the socket could
// not see past.
type epollHangups struct {
	f  *os.File // the epoll descriptor
	rc interface {
		Control(func(fd uintptr)) error
		Read(func(fd uintptr) bool) error
	}

	mu     sync.Mutex
	closed bool
	next   uint64
	gone   map[uint64]func()
}

func newHangupWatch() (hangupWatch, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "epoll-hangups")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &epollHangups{f: f, rc: rc, gone: make(map[uint64]func())}, nil
}

func (w *epollHangups) add(c acceptedConn, gone func()) (uint64, bool) {
	crc, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, false
	}
	w.next++
	key := w.next
	// Registered before the descriptor is added: a client gone already
	// is reported at once.
	w.gone[key] = gone
	ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(uint32(key)), Pad: int32(uint32(key >> 32))}
	var cerr error
	err = crc.Control(func(cfd uintptr) {
		cerr = w.ctl(unix.EPOLL_CTL_ADD, int(cfd), &ev)
	})
	if err != nil || cerr != nil {
		delete(w.gone, key)
		return 0, false
	}
	return key, true
}

func (w *epollHangups) remove(c acceptedConn, key uint64) {
	w.mu.Lock()
	delete(w.gone, key)
	closed := w.closed
	w.mu.Unlock()
	if closed {
		return
	}
	if crc, err := c.SyscallConn(); err == nil {
		_ = crc.Control(func(cfd uintptr) { _ = w.ctl(unix.EPOLL_CTL_DEL, int(cfd), nil) })
	}
}

// ctl runs epoll_ctl on the set; an error when the set is closed.
func (w *epollHangups) ctl(op, fd int, ev *unix.EpollEvent) error {
	var err error
	if cerr := w.rc.Control(func(epfd uintptr) { err = unix.EpollCtl(int(epfd), op, fd, ev) }); cerr != nil {
		return cerr
	}
	return err
}

func (w *epollHangups) run() {
	events := make([]unix.EpollEvent, 256)
	_ = w.rc.Read(func(epfd uintptr) bool {
		for {
			n, err := unix.EpollWait(int(epfd), events, 0)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return true // the set is unusable: stop watching
			}
			for _, ev := range events[:n] {
				if ev.Events&(unix.EPOLLHUP|unix.EPOLLERR) == 0 {
					continue // a half-close: the client may still read
				}
				key := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
				w.mu.Lock()
				gone := w.gone[key]
				delete(w.gone, key)
				w.mu.Unlock()
				if gone != nil {
					gone()
				}
			}
			if n < len(events) {
				// Drained: the poller reports the set's next event (it
				// is edge-triggered, so a set left with ready events
				// would never be reported again).
				return false
			}
		}
	})
}

func (w *epollHangups) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.f.Close() // ends run's wait
}
