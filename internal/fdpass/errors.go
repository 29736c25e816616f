package fdpass

import (
	"errors"
	"fmt"
)

// The errors below are defined on every platform so that transport-agnostic
// code (the handoff orchestrator) can classify failures without build tags.

// Errors a [Receiver] attaches to a [Message] whose descriptors it had to drop.
// The frame body is still delivered so the caller can reject the offer it
// carries; every descriptor received with it has already been closed.
var (
	// ErrControlTruncated means the kernel set MSG_CTRUNC: the sender attached
	// more ancillary data than the receiver's control buffer holds, so some
	// descriptors were lost in the kernel. The ones that did arrive were closed.
	ErrControlTruncated = errors.New("fdpass: control message truncated (MSG_CTRUNC)")
	// ErrTooManyFDs means one frame arrived with more than one descriptor.
	// A handoff offer carries exactly one; all of them were closed.
	ErrTooManyFDs = errors.New("fdpass: more than one descriptor for one frame")
	// ErrFDMisaligned means descriptors arrived with bytes that do not start a
	// frame, so they cannot be bound to an offer. They were closed.
	ErrFDMisaligned = errors.New("fdpass: descriptor not aligned with a frame start")
)

// Framing errors. The Receiver returns them from Next; they are fatal for the
// connection (the byte stream can no longer be trusted). SendWithFD returns
// them wrapped in ErrInvalidFrame when asked to send something that is not
// one complete frame.
var (
	// ErrBadFramingVersion means a frame header's first byte is not 0x01.
	ErrBadFramingVersion = errors.New("fdpass: bad framing version byte")
	// ErrFrameTooLarge means a frame header announces a body larger than the
	// limit. Nothing is allocated for it.
	ErrFrameTooLarge = errors.New("fdpass: frame body too large")
	// ErrInvalidFrame means SendWithFD was given bytes that are not exactly one
	// complete frame; nothing was sent.
	ErrInvalidFrame = errors.New("fdpass: message is not exactly one frame")
	// ErrBadFD means a negative descriptor was passed in.
	ErrBadFD = errors.New("fdpass: invalid descriptor")
	// ErrNotUnixStream means ConnFromFD was given a descriptor that is not an
	// AF_UNIX SOCK_STREAM socket.
	ErrNotUnixStream = errors.New("fdpass: descriptor is not a unix stream socket")
)

// Windows handle duplication errors ([DuplicateInto], [DuplicateIntoProcess],
// [CloseInTarget], [CloseInProcess]). A failure can match more than one:
// OpenProcess refused with ERROR_ACCESS_DENIED matches both ErrOpenProcess
// and ErrAccessDenied.
//
// For a caller that must classify: ErrAccessDenied (and nothing else) is a
// permission problem; ErrTargetExited, ErrInvalidHandle and ErrOpenProcess
// mean the handoff's objects are not what they should be (the target is
// gone, a handle is stale or of the wrong kind).
var (
	// ErrOpenProcess means OpenProcess(PROCESS_DUP_HANDLE) on the target
	// failed (process gone, or not ours to open).
	ErrOpenProcess = errors.New("fdpass: cannot open target process")
	// ErrAccessDenied means Windows answered ERROR_ACCESS_DENIED, and the
	// target process was still running.
	ErrAccessDenied = errors.New("fdpass: access denied")
	// ErrDuplicateFailed means DuplicateHandle itself failed.
	ErrDuplicateFailed = errors.New("fdpass: DuplicateHandle failed")
	// ErrInvalidHandle means Windows answered ERROR_INVALID_HANDLE: the
	// handle to duplicate, or the target process handle, is not a valid
	// handle (closed already, or never one).
	ErrInvalidHandle = errors.New("fdpass: invalid handle")
	// ErrTargetExited means the target process has exited, so nothing can
	// be duplicated into it (Windows then says ERROR_ACCESS_DENIED, which
	// this error replaces).
	ErrTargetExited = errors.New("fdpass: target process has exited")
)

// Errors of [ConnFromHandle]. The handle it was given has been closed.
var (
	// ErrNotPipeServer means the handle is not the server end of a named
	// pipe (GetFileType, GetNamedPipeInfo).
	ErrNotPipeServer = errors.New("fdpass: handle is not the server end of a named pipe")
	// ErrNotAdoptable means the handle cannot be bound to this process's
	// I/O completion port: its file object is bound to another one already
	// (for example the sender read it through go-winio or os.File before
	// duplicating it), or it was opened for synchronous I/O.
	ErrNotAdoptable = errors.New("fdpass: handle cannot be bound to a completion port here")
)

// ErrUnsupported reports that this platform cannot move connections between
// processes. It matches errors.ErrUnsupported.
var ErrUnsupported = fmt.Errorf("fdpass: %w on this platform", errors.ErrUnsupported)
