//go:build linux || darwin

package fdpass

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/portier/portier/internal/fdcount"
	"golang.org/x/sys/unix"
)

// refParse is the plain, whole-buffer reading of the framing the Receiver
// must agree with: the frames it yields and the error that ends the stream.
func refParse(data []byte, maxBody int) ([][]byte, error) {
	var bodies [][]byte
	for {
		switch {
		case len(data) == 0:
			return bodies, io.EOF
		case data[0] != framingVersion:
			return bodies, ErrBadFramingVersion
		case len(data) < headerLen:
			return bodies, io.ErrUnexpectedEOF
		}
		n := binary.LittleEndian.Uint32(data[1:headerLen])
		if uint64(n) > uint64(maxBody) {
			return bodies, ErrFrameTooLarge
		}
		if uint64(len(data)-headerLen) < uint64(n) {
			return bodies, io.ErrUnexpectedEOF
		}
		bodies = append(bodies, data[headerLen:headerLen+int(n)])
		data = data[headerLen+int(n):]
	}
}

// FuzzReceiver streams arbitrary bytes through a real socket pair, cut into
// writes of `chunk` bytes, with one descriptor attached to write i when bit
// i of fdMask is set. The Receiver must agree with refParse on every body and
// on the final error, never hand out a descriptor together with an error, and
// leak no descriptor.
func FuzzReceiver(f *testing.F) {
	f.Add(frame([]byte("hello")), uint32(0), uint16(0), uint64(1))
	f.Add(append(frame(nil), frame([]byte("x"))...), uint32(4), uint16(3), uint64(0b1010))
	f.Add([]byte{2, 0, 0, 0, 0}, uint32(0), uint16(1), uint64(0))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff}, uint32(0), uint16(0), uint64(1))
	f.Fuzz(func(t *testing.T, data []byte, maxBody uint32, chunk uint16, fdMask uint64) {
		if len(data) > 1<<16 {
			t.Skip("bounded to keep iterations fast")
		}
		limit := int(maxBody % (1 << 17)) // keeps allocations small; 0 means MaxBody
		refLimit := limit
		if refLimit == 0 {
			refLimit = MaxBody
		}
		wantBodies, wantErr := refParse(data, refLimit)

		fdcount.Check(t)
		a, b := socketPair(t, unix.SOCK_STREAM)
		file := pipeFDs(t, 1)[0]
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer a.CloseWrite()
			size := int(chunk)
			if size == 0 {
				size = len(data)
			}
			for i, rest := 0, data; len(rest) > 0; i++ {
				p := rest[:min(size, len(rest))]
				rest = rest[len(p):]
				var oob []byte
				if i < 64 && fdMask&(1<<i) != 0 {
					oob = unix.UnixRights(file)
				}
				err := sendRaw(a, p, oob)
				if err != nil {
					return // receiver gave up (fatal framing error)
				}
			}
		}()

		r := NewReceiver(b, limit)
		_ = b.SetReadDeadline(testDeadline())
		var gotErr error
		for i := 0; ; i++ {
			m, err := r.Next()
			if err != nil {
				gotErr = err
				break
			}
			if m.FD >= 0 && m.Err != nil {
				t.Errorf("frame %d: both fd and error", i)
			}
			closeFD(m.FD)
			if i >= len(wantBodies) || !bytes.Equal(m.Body, wantBodies[i]) {
				t.Fatalf("frame %d differs from reference", i)
			}
			wantBodies[i] = nil
		}
		_ = r.Close()
		_ = b.Close() // unblocks the writer if the Receiver stopped early
		wg.Wait()
		if !errors.Is(gotErr, wantErr) {
			t.Fatalf("final error %v, reference %v", gotErr, wantErr)
		}
	})
}

// FuzzParseRights: any control buffer parses without panicking, and every
// descriptor returned comes from a whole 4-byte slot inside the buffer.
func FuzzParseRights(f *testing.F) {
	f.Add(unix.UnixRights(3))
	f.Add(append(unix.UnixRights(4, 5), unix.UnixRights(6)...))
	f.Add(unix.UnixRights(7)[:unix.CmsgLen(0)+2])
	f.Fuzz(func(t *testing.T, oob []byte) {
		fds := parseRights(oob)
		if len(fds)*4 > len(oob) {
			t.Fatalf("%d fds from %d bytes", len(fds), len(oob))
		}
	})
}
