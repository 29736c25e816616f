package client

import (
	"errors"
	"io"

	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// frameReader reads frames from a connection the client owns, reading ahead
// as far as one Read returns. Unlike wire.ReadFrame it may consume bytes past
// the frame it returns: that is what lets one read syscall deliver
// Negotiated, the ready event and the backend's first bytes together. Only
// the party that owns a socket for good may do this; the broker, which must
// leave pipelined bytes in the socket, uses wire.ReadFrame.
type frameReader struct {
	r        io.Reader
	buf      []byte
	off, end int // unread bytes are buf[off:end]
}

// maxZeroReads bounds Reads that return neither data nor an error, which
// io.Reader discourages but allows.
const maxZeroReads = 100

// fill makes sure at least n unread bytes are buffered.
func (fr *frameReader) fill(n int) error {
	if fr.end-fr.off >= n {
		return nil
	}
	if len(fr.buf)-fr.off < n {
		// Not enough room after off: move the unread bytes to the front,
		// into a larger buffer if needed.
		dst := fr.buf
		if n > len(fr.buf) {
			dst = make([]byte, n)
		}
		fr.end = copy(dst, fr.buf[fr.off:fr.end])
		fr.off = 0
		fr.buf = dst
	}
	zero := 0
	for fr.end-fr.off < n {
		m, err := fr.r.Read(fr.buf[fr.end:])
		fr.end += m
		if fr.end-fr.off >= n {
			return nil
		}
		if err != nil {
			return err
		}
		if m == 0 {
			if zero++; zero >= maxZeroReads {
				return io.ErrNoProgress
			}
		}
	}
	return nil
}

// next returns the next frame, its body at most max bytes. A clean end of
// stream before the frame's first byte is io.EOF; an end inside the frame is
// a *wire.TruncatedError.
func (fr *frameReader) next(max int) (*pb.Frame, error) {
	if err := fr.fill(wire.HeaderLen); err != nil {
		return nil, fr.eofError(err, "header", wire.HeaderLen)
	}
	n, err := wire.ParseHeader(fr.buf[fr.off:fr.off+wire.HeaderLen], max)
	if err != nil {
		return nil, err
	}
	if err := fr.fill(wire.HeaderLen + n); err != nil {
		return nil, fr.eofError(err, "body", n)
	}
	body := fr.buf[fr.off+wire.HeaderLen : fr.off+wire.HeaderLen+n]
	fr.off += wire.HeaderLen + n
	// DecodeFrame copies bytes fields, so the buffer may be reused.
	return wire.DecodeFrame(body)
}

func (fr *frameReader) eofError(err error, part string, want int) error {
	if !errors.Is(err, io.EOF) {
		return err
	}
	got := fr.end - fr.off
	if got == 0 {
		return io.EOF
	}
	if part == "body" {
		got -= wire.HeaderLen
	}
	return &wire.TruncatedError{Part: part, Want: want, Got: got}
}

// rest returns the bytes read past the last frame, nil when there are none.
func (fr *frameReader) rest() []byte {
	if fr.off == fr.end {
		return nil
	}
	return fr.buf[fr.off:fr.end:fr.end]
}

// hasFrame reports whether a complete frame is already buffered, so next
// would not read from the socket.
func (fr *frameReader) hasFrame() bool {
	if fr.end-fr.off < wire.HeaderLen {
		return false
	}
	n, err := wire.ParseHeader(fr.buf[fr.off:fr.off+wire.HeaderLen], maxReplyBody)
	return err != nil || fr.end-fr.off >= wire.HeaderLen+n
}
