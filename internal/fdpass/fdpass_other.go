//go:build !linux && !darwin && !windows

package fdpass

import (
	"net"
	"syscall"
	"time"
)

// MaxBody is the largest frame body the protocol allows (16 MiB).
const MaxBody = 16 << 20

// SendWithFD is not implemented on this platform; it returns ErrUnsupported
// and sends nothing.
func SendWithFD(c *net.UnixConn, msg []byte, fd int, deadline time.Time) (fdSent bool, err error) {
	return false, ErrUnsupported
}

// Receiver is not implemented on this platform: Next returns ErrUnsupported.
type Receiver struct{}

// NewReceiver returns a Receiver whose Next fails with ErrUnsupported.
func NewReceiver(c *net.UnixConn, maxBody int) *Receiver { return &Receiver{} }

// Next returns ErrUnsupported.
func (r *Receiver) Next() (Message, error) { return Message{FD: -1}, ErrUnsupported }

// OnIdle does nothing on this platform.
func (r *Receiver) OnIdle(func()) {}

// Close does nothing.
func (r *Receiver) Close() error { return nil }

// ConnFromFD is not implemented on this platform; it returns ErrUnsupported
// and leaves fd open.
func ConnFromFD(fd int) (net.Conn, error) { return nil, ErrUnsupported }

// WithFD is not implemented on this platform; it returns ErrUnsupported
// without calling fn.
func WithFD(c syscall.Conn, fn func(fd int) error) error { return ErrUnsupported }
