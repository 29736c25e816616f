//go:build !windows

package fdpass

// Message is one frame read by a Receiver.
type Message struct {
	// Body is the frame body, without the 5-byte header. It is the caller's.
	Body []byte
	// FD is the descriptor that arrived with this frame, or -1. The caller
	// owns it and must close it (or pass it to ConnFromFD).
	FD int
	// Err is non-nil when descriptors arrived for this frame but were dropped
	// (ErrControlTruncated, ErrTooManyFDs, ErrFDMisaligned); they are already
	// closed and FD is -1. Body is still valid so the caller can reject the
	// offer it carries. The connection stays usable.
	Err error
}
