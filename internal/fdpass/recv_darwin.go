package fdpass

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// sendFlags: macOS has no MSG_NOSIGNAL contract we rely on; the Go runtime
// already turns SIGPIPE on a socket into EPIPE for non-stdio descriptors.
const sendFlags = unix.MSG_DONTWAIT

// recvFDs does one non-blocking recvmsg and marks received descriptors
// close-on-exec.
//
// macOS has no MSG_CMSG_CLOEXEC, so there is a window between recvmsg
// installing a descriptor and fcntl(FD_CLOEXEC) in which a fork+exec would
// let a child inherit it. Holding syscall.ForkLock for reading across both
// calls closes that window for every fork the Go runtime performs (os/exec,
// syscall.ForkExec take the write lock) — the same technique the net package
// uses for accept where accept4 is missing. A fork from C code (cgo) does not
// take ForkLock and can still inherit the descriptor inside that window. The
// lock is held only for the two non-blocking calls, never while waiting.
func recvFDs(s int, iov [][]byte, oob []byte) (n int, fds []int, truncated bool, err error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	n, oobn, flags, _, err := unix.RecvmsgBuffers(s, iov, oob, unix.MSG_DONTWAIT)
	if err != nil {
		return 0, nil, false, err
	}
	fds = parseRights(oob[:oobn])
	for _, fd := range fds {
		unix.CloseOnExec(fd)
	}
	return n, fds, flags&unix.MSG_CTRUNC != 0, nil
}
