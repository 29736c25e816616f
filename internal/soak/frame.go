package soak

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// A request frame: magic, sequence number, payload length, CRC-32 (IEEE) of
// the payload, all little-endian, then the payload. The backend echoes a
// valid frame byte for byte; the client compares the echo with what it sent.
// The sequence number counts the requests of one connection from 0, so a
// request lost, duplicated (a replay gone wrong) or delivered to another
// connection is caught by the backend even when each frame is intact.
const (
	headerLen  = 16
	maxPayload = 64 << 10
)

var frameMagic = [4]byte{'S', 'O', 'A', 'K'}

// badPrefix starts the backend's answer to a request it found broken; the
// client, which compares bytes, counts it as corrupt and shows the reason.
const badPrefix = "SOAK-BAD "

// errBadRequest matches every reason the backend rejects a request for.
var errBadRequest = errors.New("bad request")

// appendRequest appends the frame for payload with sequence number seq.
func appendRequest(dst []byte, seq uint32, payload []byte) []byte {
	var h [headerLen]byte
	copy(h[0:4], frameMagic[:])
	binary.LittleEndian.PutUint32(h[4:8], seq)
	binary.LittleEndian.PutUint32(h[8:12], uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[12:16], crc32.ChecksumIEEE(payload))
	dst = append(dst, h[:]...)
	return append(dst, payload...)
}

// readRequest reads one frame from r into buf (grown as needed, up to
// headerLen+maxPayload) and checks it: magic, sequence number wantSeq,
// length and checksum. It returns the whole frame. io.EOF means r ended
// cleanly before a frame began; a frame cut short is io.ErrUnexpectedEOF; a
// frame that is wrong matches errBadRequest.
func readRequest(r io.Reader, buf []byte, wantSeq uint32) ([]byte, error) {
	if cap(buf) < headerLen {
		buf = make([]byte, 0, headerLen)
	}
	h := buf[:headerLen]
	if _, err := io.ReadFull(r, h); err != nil {
		return nil, err
	}
	if [4]byte(h[0:4]) != frameMagic {
		return nil, fmt.Errorf("%w: magic %q", errBadRequest, h[0:4])
	}
	if seq := binary.LittleEndian.Uint32(h[4:8]); seq != wantSeq {
		return nil, fmt.Errorf("%w: sequence number %d, want %d", errBadRequest, seq, wantSeq)
	}
	n := binary.LittleEndian.Uint32(h[8:12])
	if n > maxPayload {
		return nil, fmt.Errorf("%w: payload length %d over %d", errBadRequest, n, maxPayload)
	}
	total := headerLen + int(n)
	if cap(buf) < total {
		nb := make([]byte, total)
		copy(nb, h)
		buf = nb
	}
	f := buf[:total]
	if _, err := io.ReadFull(r, f[headerLen:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if sum := crc32.ChecksumIEEE(f[headerLen:]); sum != binary.LittleEndian.Uint32(f[12:16]) {
		return nil, fmt.Errorf("%w: checksum %08x, header says %08x", errBadRequest, sum, binary.LittleEndian.Uint32(f[12:16]))
	}
	return f, nil
}
