package fdpass

import "golang.org/x/sys/unix"

// sendFlags: MSG_NOSIGNAL turns a write to a closed peer into EPIPE without
// raising SIGPIPE; MSG_DONTWAIT keeps the call non-blocking even if someone
// switched the socket to blocking mode.
const sendFlags = unix.MSG_NOSIGNAL | unix.MSG_DONTWAIT

// recvFDs does one non-blocking recvmsg. MSG_CMSG_CLOEXEC makes the kernel
// install received descriptors close-on-exec atomically, so a concurrent
// fork+exec never inherits them.
func recvFDs(s int, iov [][]byte, oob []byte) (n int, fds []int, truncated bool, err error) {
	n, oobn, flags, _, err := unix.RecvmsgBuffers(s, iov, oob, unix.MSG_CMSG_CLOEXEC|unix.MSG_DONTWAIT)
	if err != nil {
		return 0, nil, false, err
	}
	return n, parseRights(oob[:oobn]), flags&unix.MSG_CTRUNC != 0, nil
}
