package ipc

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// pendingInstances is how many pipe instances a Listener keeps waiting for a
// client. A client that finds none free gets ERROR_PIPE_BUSY (and DialPipe
// retries until its deadline); a few pending instances absorb bursts while
// the accept loop creates the next ones.
const pendingInstances = 4

// armRetryDelay is how long the accept loop waits before it tries again to
// create an instance after CreateNamedPipe failed (for example while the
// system is out of handles).
const armRetryDelay = 100 * time.Millisecond

// Listener accepts client connections on a named pipe without binding any
// pipe instance to an I/O completion port (see PipeConn for why). It keeps
// pendingInstances instances waiting in ConnectNamedPipe, each with its own
// event, and a single goroutine waits on all of them.
//
// Listener implements net.Listener; Accept returns *PipeConn values.
type Listener struct {
	name   string
	name16 *uint16
	sa     *windows.SecurityAttributes
	mutex  windows.Handle // singleton lock, held until Close

	conns   chan *PipeConn
	errs    chan error     // instance creation failures, for Accept to report
	quit    windows.Handle // manual-reset event: wakes the accept loop on Close
	closing chan struct{}
	done    chan struct{} // closed when the accept loop has exited

	// stopArm (a manual-reset event) tells the accept loop to create no
	// more instances (StopNewClients); it closes armStopped once it has
	// handed over the connected ones and closed the others.
	stopArm    windows.Handle
	armStopped chan struct{}
	stopOnce   sync.Once

	closeOnce sync.Once
}

// ListenSingleton creates the named pipe name (\\.\pipe\...) as the one
// server for it, for example the per-user broker.
//
// Being the one server takes two steps. First a named mutex derived from the
// pipe name (Global\portier-<hash>, owner-only DACL) is created and held
// until Close; if it exists already, another process is (or is becoming) the
// server: ErrAlreadyRunning. Then the pipe is probed: if a server answers
// (some process that does not use the mutex), ErrAlreadyRunning too. A pipe
// whose instances are all connected and none listening is not a live
// server: those are handed-off connections held by backends, which keep the
// pipe name alive across a broker restart. That is why this does not use
// FILE_FLAG_FIRST_PIPE_INSTANCE, which would refuse to start a broker while
// any backend still serves a client it received from the previous one.
//
// The mutex is in the Global\ namespace because pipe names are machine-wide:
// a user logged on twice (two sessions) must still get one broker.
//
// Pipe instances reject remote clients and carry a protected DACL that
// grants the current user, and nobody else, full access.
func ListenSingleton(name string) (*Listener, error) {
	sa, err := userOnlySecurityAttributes()
	if err != nil {
		return nil, err
	}
	mutex, err := acquireSingleton(name, sa)
	if err != nil {
		return nil, err
	}
	live, err := probePipe(name)
	if err == nil && live {
		err = fmt.Errorf("%w: a server answers on %s", ErrAlreadyRunning, name)
	}
	if err != nil {
		_ = windows.CloseHandle(mutex)
		return nil, err
	}
	l, err := newListener(name, sa)
	if err != nil {
		_ = windows.CloseHandle(mutex)
		return nil, err
	}
	l.mutex = mutex
	return l, nil
}

// singletonMutexName is the name of the mutex that guards pipe name. Pipe
// names are case-insensitive, so the hash is of the lower-case name.
func singletonMutexName(pipe string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(pipe)))
	return `Global\portier-` + hex.EncodeToString(sum[:8])
}

// acquireSingleton creates the pipe's singleton mutex. Its existence is the
// lock (nobody waits on it): the object lives as long as a handle to it is
// open, so a process that dies releases it. The handle is not inheritable,
// so spawned backends never keep it alive.
func acquireSingleton(pipe string, sa *windows.SecurityAttributes) (windows.Handle, error) {
	name := singletonMutexName(pipe)
	name16, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return 0, fmt.Errorf("ipc: mutex name: %w", err)
	}
	h, err := windows.CreateMutex(sa, false, name16)
	switch {
	case errors.Is(err, windows.ERROR_ALREADY_EXISTS):
		_ = windows.CloseHandle(h)
		return 0, fmt.Errorf("%w: mutex %s exists", ErrAlreadyRunning, name)
	case errors.Is(err, windows.ERROR_ACCESS_DENIED):
		// It exists and its DACL keeps us out: not created by this user.
		return 0, fmt.Errorf("ipc: mutex %s is held by another user (%w); pipe %s cannot be served safely", name, err, pipe)
	case err != nil:
		return 0, fmt.Errorf("ipc: CreateMutex %s: %w", name, err)
	}
	return h, nil
}

// probeWait bounds how long probePipe waits for a busy pipe to offer a free
// instance. A live Listener re-arms an instance within microseconds; a pipe
// whose every instance is a handed-off connection never offers one.
const probeWait = 250 * time.Millisecond

// probePipe reports whether a server is listening on pipe name.
func probePipe(name string) (bool, error) {
	name16, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return false, fmt.Errorf("ipc: pipe name: %w", err)
	}
	for attempt := 0; ; attempt++ {
		h, err := windows.CreateFile(name16, windows.GENERIC_READ|windows.GENERIC_WRITE, 0, nil,
			windows.OPEN_EXISTING, windows.SECURITY_SQOS_PRESENT|windows.SECURITY_ANONYMOUS, 0)
		switch {
		case err == nil:
			_ = windows.CloseHandle(h)
			return true, nil
		case errors.Is(err, windows.ERROR_FILE_NOT_FOUND):
			return false, nil
		case errors.Is(err, windows.ERROR_ACCESS_DENIED):
			// Our own broker's pipe grants us full access.
			return false, fmt.Errorf("ipc: pipe %s exists but does not let this user in: %w", name, err)
		case errors.Is(err, windows.ERROR_PIPE_BUSY) && attempt == 0:
			werr := waitPipeInstance(name16, probeWait)
			if errors.Is(werr, windows.ERROR_SEM_TIMEOUT) || errors.Is(werr, windows.ERROR_FILE_NOT_FOUND) {
				return false, nil // nobody listening: only handed-off instances
			}
			// An instance came free (or the wait failed): look again.
		case errors.Is(err, windows.ERROR_PIPE_BUSY):
			// Busy twice with a server listening in between: a live server
			// under load.
			return true, nil
		default:
			return false, fmt.Errorf("ipc: probe pipe %s: %w", name, err)
		}
	}
}

// newListener creates the first instances and starts the accept loop.
func newListener(name string, sa *windows.SecurityAttributes) (*Listener, error) {
	name16, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return nil, fmt.Errorf("ipc: pipe name: %w", err)
	}
	quit, err := windows.CreateEvent(nil, 1, 0, nil)
	if err != nil {
		return nil, fmt.Errorf("ipc: CreateEvent: %w", err)
	}
	stopArm, err := windows.CreateEvent(nil, 1, 0, nil)
	if err != nil {
		_ = windows.CloseHandle(quit)
		return nil, fmt.Errorf("ipc: CreateEvent: %w", err)
	}
	l := &Listener{
		name:       name,
		name16:     name16,
		sa:         sa,
		conns:      make(chan *PipeConn, pendingInstances),
		errs:       make(chan error, 1),
		quit:       quit,
		closing:    make(chan struct{}),
		done:       make(chan struct{}),
		stopArm:    stopArm,
		armStopped: make(chan struct{}),
	}
	// Arm the first instances before returning, so that the pipe exists
	// (and a client can connect) as soon as ListenSingleton returns.
	slots := make([]*pipeSlot, pendingInstances)
	for i := range slots {
		s, err := l.arm()
		if err != nil {
			for _, s := range slots[:i] {
				s.abort()
			}
			_ = windows.CloseHandle(quit)
			_ = windows.CloseHandle(stopArm)
			return nil, err
		}
		slots[i] = s
	}
	go l.run(slots)
	return l, nil
}

// pipeSlot is one pipe instance waiting for a client.
type pipeSlot struct {
	h         windows.Handle
	o         windows.Overlapped // heap: the kernel holds it until the connect ends
	connected bool               // ConnectNamedPipe ended at once: no result to collect
	err       error              // how it ended, if it failed
}

// arm creates a pipe instance and starts an overlapped ConnectNamedPipe.
func (l *Listener) arm() (*pipeSlot, error) {
	h, err := windows.CreateNamedPipe(l.name16,
		windows.PIPE_ACCESS_DUPLEX|windows.FILE_FLAG_OVERLAPPED,
		windows.PIPE_TYPE_BYTE|windows.PIPE_READMODE_BYTE|windows.PIPE_WAIT|windows.PIPE_REJECT_REMOTE_CLIENTS,
		windows.PIPE_UNLIMITED_INSTANCES, pipeBufferSize, pipeBufferSize, 0, l.sa)
	if err != nil {
		return nil, fmt.Errorf("ipc: CreateNamedPipe %s: %w", l.name, err)
	}
	ev, err := windows.CreateEvent(nil, 1, 0, nil)
	if err != nil {
		_ = windows.CloseHandle(h)
		return nil, fmt.Errorf("ipc: CreateEvent: %w", err)
	}
	s := &pipeSlot{h: h}
	s.o.HEvent = ev
	switch err := windows.ConnectNamedPipe(h, &s.o); {
	case errors.Is(err, windows.ERROR_IO_PENDING):
	case err == nil, errors.Is(err, windows.ERROR_PIPE_CONNECTED):
		// A client got in between CreateNamedPipe and ConnectNamedPipe;
		// the kernel does not signal the event for that.
		s.connected = true
		_ = windows.SetEvent(ev)
	default:
		// ERROR_NO_DATA (the client already left) and anything else: this
		// instance is no use; finish says so and the loop makes another.
		s.connected, s.err = true, err
		_ = windows.SetEvent(ev)
	}
	return s, nil
}

// finish collects a slot whose event is signaled: a connected PipeConn, or
// nil if the client left before it was accepted.
func (l *Listener) finish(s *pipeSlot) (*PipeConn, error) {
	err := s.err
	if !s.connected {
		var n uint32
		err = windows.GetOverlappedResult(s.h, &s.o, &n, false)
	}
	if err != nil && !errors.Is(err, windows.ERROR_PIPE_CONNECTED) {
		s.close()
		if errors.Is(err, windows.ERROR_NO_DATA) || errors.Is(err, windows.ERROR_BROKEN_PIPE) {
			return nil, nil
		}
		return nil, fmt.Errorf("ipc: ConnectNamedPipe %s: %w", l.name, err)
	}
	// ResetEvent: the event becomes the connection's read event.
	_ = windows.ResetEvent(s.o.HEvent)
	return newPipeConn(s.h, s.o.HEvent, l.name)
}

// abort cancels a pending connect, waits until the kernel is done with the
// OVERLAPPED (cancel), and closes the instance, connected or not.
func (s *pipeSlot) abort() {
	s.cancel()
	s.close()
}

func (s *pipeSlot) close() {
	_ = windows.CloseHandle(s.h)
	_ = windows.CloseHandle(s.o.HEvent)
}

// run is the accept loop: it waits for any armed instance to connect (or for
// Close), hands the connection to Accept and re-arms the slot.
func (l *Listener) run(slots []*pipeSlot) {
	defer close(l.done)
	defer func() {
		for _, s := range slots {
			if s != nil {
				s.abort()
			}
		}
	}()
	handles := make([]windows.Handle, 0, 2+len(slots))
	index := make([]int, 0, len(slots))
	arming := true
	for {
		timeout := uint32(windows.INFINITE)
		for i, s := range slots {
			if s != nil || !arming {
				continue
			}
			if ns, err := l.arm(); err == nil {
				slots[i] = ns
			} else {
				l.report(err)
				timeout = uint32(armRetryDelay.Milliseconds())
			}
		}
		handles = append(handles[:0], l.quit)
		if arming {
			handles = append(handles, l.stopArm)
		}
		first := len(handles) // the slots' events start here
		index = index[:0]
		for i, s := range slots {
			if s != nil {
				handles = append(handles, s.o.HEvent)
				index = append(index, i)
			}
		}
		r, err := windows.WaitForMultipleObjects(handles, false, timeout)
		if err != nil {
			// Only invalid handles make the wait fail: a bug, not a
			// condition to spin on.
			l.report(fmt.Errorf("ipc: accept loop: WaitForMultipleObjects: %w", err))
			return
		}
		if r == uint32(windows.WAIT_TIMEOUT) {
			continue
		}
		k := int(r - windows.WAIT_OBJECT_0)
		if k == 0 || k >= len(handles) {
			return // quit (or a value the API does not return)
		}
		if k < first { // stopArm
			arming = false
			if !l.stopSlots(slots) {
				return
			}
			close(l.armStopped)
			continue
		}
		i := index[k-first]
		s := slots[i]
		slots[i] = nil
		c, err := l.finish(s)
		if err != nil {
			l.report(err)
			continue
		}
		if c == nil {
			continue
		}
		select {
		case l.conns <- c:
		case <-l.closing:
			_ = c.Close()
			return
		}
	}
}

// stopSlots ends every armed instance for StopNewClients: one a client
// has connected to goes to Accept, the others are closed, so no client can
// connect from now on. It reports false when Close came meanwhile.
func (l *Listener) stopSlots(slots []*pipeSlot) bool {
	for i, s := range slots {
		if s == nil {
			continue
		}
		slots[i] = nil
		if !s.cancel() {
			s.close()
			continue
		}
		c, err := l.finish(s)
		if err != nil || c == nil {
			continue
		}
		select {
		case l.conns <- c:
		case <-l.closing:
			_ = c.Close()
			return false
		}
	}
	return true
}

// cancel cancels a pending connect and waits until the kernel is done with
// the OVERLAPPED. It reports whether a client had connected all the same
// (the connect completed before the cancel): the instance is then finish's.
func (s *pipeSlot) cancel() (connected bool) {
	if s.connected {
		return s.err == nil
	}
	if err := windows.CancelIoEx(s.h, &s.o); err != nil && !errors.Is(err, windows.ERROR_NOT_FOUND) {
		return false
	}
	var n uint32
	err := windows.GetOverlappedResult(s.h, &s.o, &n, true)
	if err == nil || errors.Is(err, windows.ERROR_PIPE_CONNECTED) {
		s.connected = true
		return true
	}
	return false
}

// StopNewClients stops creating pipe instances and closes those no client
// has connected to, so that no new client can connect while the connected
// ones can still be accepted (Pending). A client dialing the pipe then
// finds no free instance and, when no other instance keeps the name
// alive, no pipe at all. It reports true, like the Unix Listener when it
// removed its socket file.
func (l *Listener) StopNewClients() (bool, error) {
	l.stopOnce.Do(func() { _ = windows.SetEvent(l.stopArm) })
	select {
	case <-l.armStopped:
		return true, nil
	case <-l.done:
		return false, l.closedErr()
	}
}

// Pending reports whether a client connected to an instance that Accept
// has not taken yet.
func (l *Listener) Pending() (bool, error) {
	select {
	case <-l.done:
		return false, l.closedErr()
	default:
	}
	return len(l.conns) > 0, nil
}

// report hands err to the next Accept, dropping it if one is already waiting
// to be reported.
func (l *Listener) report(err error) {
	select {
	case l.errs <- err:
	default:
	}
}

// Accept waits for the next client connection.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.AcceptPipe()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// AcceptPipe waits for the next client connection. An error other than
// net.ErrClosed (failing to create a pipe instance) is transient: the
// listener keeps trying.
func (l *Listener) AcceptPipe() (*PipeConn, error) {
	select {
	case <-l.closing:
		return nil, l.closedErr()
	default:
	}
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errs:
		return nil, &net.OpError{Op: "accept", Net: "pipe", Addr: PipeAddr(l.name), Err: err}
	case <-l.closing:
		return nil, l.closedErr()
	case <-l.done:
		return nil, l.closedErr()
	}
}

func (l *Listener) closedErr() error {
	return &net.OpError{Op: "accept", Net: "pipe", Addr: PipeAddr(l.name), Err: net.ErrClosed}
}

// Close stops accepting: it cancels the pending connects, closes the
// instances nobody accepted yet, waits for the accept loop to exit and
// releases the singleton mutex. Connections already accepted stay open.
func (l *Listener) Close() error {
	first := false
	l.closeOnce.Do(func() {
		first = true
		close(l.closing)
		_ = windows.SetEvent(l.quit)
		<-l.done
		// The loop has exited: nothing sends on conns any more.
		for len(l.conns) > 0 {
			_ = (<-l.conns).Close()
		}
		_ = windows.CloseHandle(l.quit)
		// Use up stopOnce (waiting for a StopNewClients already in it):
		// a later one must not SetEvent a closed handle, whose value the
		// system may have given to another object meanwhile.
		l.stopOnce.Do(func() {})
		_ = windows.CloseHandle(l.stopArm)
		if l.mutex != 0 {
			_ = windows.CloseHandle(l.mutex)
		}
	})
	if !first {
		return l.closedErr()
	}
	return nil
}

// Addr returns the pipe's name.
func (l *Listener) Addr() net.Addr { return PipeAddr(l.name) }

// Path returns the pipe's name, like the Unix Listener's Path.
func (l *Listener) Path() string { return l.name }

// userOnlySecurityAttributes wraps userOnlySDDL for CreateNamedPipe and
// CreateMutex. The handles they create are not inheritable.
func userOnlySecurityAttributes() (*windows.SecurityAttributes, error) {
	sddl, err := userOnlySDDL()
	if err != nil {
		return nil, err
	}
	sd, err := windows.SecurityDescriptorFromString(sddl)
	if err != nil {
		return nil, fmt.Errorf("ipc: security descriptor: %w", err)
	}
	sa := &windows.SecurityAttributes{SecurityDescriptor: sd}
	sa.Length = uint32(unsafe.Sizeof(*sa))
	return sa, nil
}
