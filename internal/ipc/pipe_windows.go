package ipc

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/Microsoft/go-winio"
	"golang.org/x/sys/windows"
)

// pipeBufferSize is the in-kernel buffer of each pipe instance, per
// direction.
const pipeBufferSize = 64 << 10

// ListenPipe creates the named pipe name (e.g. \\.\pipe\portier-...) with a
// protected DACL that grants the current user, and nobody else, full
// access, and rejects remote clients.
//
// It is go-winio's listener, which binds every accepted instance to this
// process's I/O completion port: use it for endpoints whose connections
// stay in this process (a backend's own endpoint). An endpoint whose
// connections are handed to another process, the broker's, needs
// ListenSingleton, whose instances are bound to no port.
//
// The first pipe instance is created with FILE_CREATE semantics
// (FILE_FLAG_FIRST_PIPE_INSTANCE), so the call fails if any process already
// created a pipe of that name: this makes ListenPipe a singleton bind, and
// it also means we never join a pipe that another user created to squat on
// our name. That failure is reported as ErrAlreadyRunning.
func ListenPipe(name string) (net.Listener, error) {
	sddl, err := userOnlySDDL()
	if err != nil {
		return nil, err
	}
	l, err := winio.ListenPipe(name, &winio.PipeConfig{
		SecurityDescriptor: sddl,
		// Explicit buffers, so that a peer's small write (a Hello, a
		// Negotiated) completes without the other side reading it yet; a
		// zero size leaves that to the implementation (Wine blocks).
		InputBufferSize:  pipeBufferSize,
		OutputBufferSize: pipeBufferSize,
	})
	if err != nil {
		if errors.Is(err, windows.ERROR_ACCESS_DENIED) || errors.Is(err, windows.ERROR_PIPE_BUSY) {
			return nil, fmt.Errorf("%w: pipe %s exists: %w", ErrAlreadyRunning, name, err)
		}
		return nil, fmt.Errorf("ipc: listen pipe: %w", err)
	}
	drainFirstInstance(name)
	return l, nil
}

// drainFirstInstance connects to and immediately closes the pipe's first
// instance. go-winio creates that instance without read/write access so that
// Windows 10 and later keep it disconnected and send clients to the instances
// Accept creates. Windows 7 and Wine connect the first client to it anyway,
// and then that client's Accept never returns (go-winio issues #173 and
// #313). Consuming the instance here, before any Accept, makes both behave
// the same; where Windows keeps the instance closed, the open fails with
// ERROR_PIPE_BUSY, which is the expected outcome and ignored like any other
// error.
func drainFirstInstance(name string) {
	p, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return
	}
	h, err := windows.CreateFile(p, 0, 0, nil, windows.OPEN_EXISTING,
		windows.SECURITY_SQOS_PRESENT|windows.SECURITY_ANONYMOUS, 0)
	if err == nil {
		_ = windows.CloseHandle(h)
	}
}

// userOnlySDDL is a protected DACL ("P": no inherited entries) with a
// single entry allowing generic-all to the current user's SID.
func userOnlySDDL() (string, error) {
	sid, err := currentUserSID()
	if err != nil {
		return "", err
	}
	return "D:P(A;;GA;;;" + sid.String() + ")", nil
}

// DialPipe connects to the named pipe name. The dial is bounded by ctx's
// deadline, or by DefaultDialTimeout when ctx has none.
func DialPipe(ctx context.Context, name string) (net.Conn, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultDialTimeout)
		defer cancel()
	}
	c, err := winio.DialPipeContext(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("ipc: dial pipe: %w", err)
	}
	return c, nil
}

// pipeHandle extracts the pipe handle from a go-winio connection. go-winio
// exposes it through Fd, which (unlike os.File.Fd on Unix) has no side
// effects.
func pipeHandle(c net.Conn) (windows.Handle, error) {
	h, ok := c.(interface{ Fd() uintptr })
	if !ok {
		return 0, fmt.Errorf("ipc: %T is not a named pipe connection", c)
	}
	return windows.Handle(h.Fd()), nil
}

// PipeClientPID returns the kernel-reported process id of the client of a
// server-side pipe connection (GetNamedPipeClientProcessId).
func PipeClientPID(c net.Conn) (int, error) {
	h, err := pipeHandle(c)
	if err != nil {
		return 0, err
	}
	var pid uint32
	if err := windows.GetNamedPipeClientProcessId(h, &pid); err != nil {
		return 0, fmt.Errorf("ipc: GetNamedPipeClientProcessId: %w", err)
	}
	return int(pid), nil
}

// PipeServerPID returns the kernel-reported process id of the server of a
// client-side pipe connection (GetNamedPipeServerProcessId), so a client
// can check it reached the process it expects.
func PipeServerPID(c net.Conn) (int, error) {
	h, err := pipeHandle(c)
	if err != nil {
		return 0, err
	}
	var pid uint32
	if err := windows.GetNamedPipeServerProcessId(h, &pid); err != nil {
		return 0, fmt.Errorf("ipc: GetNamedPipeServerProcessId: %w", err)
	}
	return int(pid), nil
}
