package soak

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

func TestRequestRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 100, maxPayload} {
		payload := bytes.Repeat([]byte{0xa5}, n)
		f := appendRequest(nil, 7, payload)
		got, err := readRequest(bytes.NewReader(f), nil, 7)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if !bytes.Equal(got, f) {
			t.Fatalf("%d bytes: read back a different frame", n)
		}
	}
}

// TestRequestDamageDetected: every field the backend checks catches its
// own kind of damage.
func TestRequestDamageDetected(t *testing.T) {
	good := appendRequest(nil, 3, []byte("twelve bytes"))
	for _, tc := range []struct {
		name   string
		damage func(f []byte) []byte
		want   error
	}{
		{"magic", func(f []byte) []byte { f[0] = 'X'; return f }, errBadRequest},
		{"sequence number", func(f []byte) []byte { f[4]++; return f }, errBadRequest},
		{"payload bit", func(f []byte) []byte { f[headerLen+2] ^= 1; return f }, errBadRequest},
		{"checksum", func(f []byte) []byte { f[12] ^= 1; return f }, errBadRequest},
		{"length over the cap", func(f []byte) []byte {
			binary.LittleEndian.PutUint32(f[8:12], maxPayload+1)
			return f
		}, errBadRequest},
		{"truncated payload", func(f []byte) []byte { return f[:len(f)-1] }, io.ErrUnexpectedEOF},
		{"truncated header", func(f []byte) []byte { return f[:headerLen-1] }, io.ErrUnexpectedEOF},
		{"nothing", func(f []byte) []byte { return f[:0] }, io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.damage(append([]byte(nil), good...))
			if _, err := readRequest(bytes.NewReader(f), nil, 3); !errors.Is(err, tc.want) {
				t.Errorf("readRequest = %v, want %v", err, tc.want)
			}
		})
	}
}

// FuzzReadRequest: the backend's decoder of client bytes never panics,
// never returns more than a frame's cap, and accepts only frames that
// re-encode to the same bytes.
func FuzzReadRequest(f *testing.F) {
	f.Add(appendRequest(nil, 0, []byte("hello")), uint32(0))
	f.Add(appendRequest(nil, 1, nil), uint32(1))
	f.Add([]byte("SOAK\x00\x00\x00\x00\xff\xff\xff\xff\x00\x00\x00\x00"), uint32(0))
	f.Fuzz(func(t *testing.T, b []byte, seq uint32) {
		got, err := readRequest(bytes.NewReader(b), nil, seq)
		if err != nil {
			return
		}
		if len(got) > headerLen+maxPayload {
			t.Fatalf("frame of %d bytes", len(got))
		}
		if want := appendRequest(nil, seq, got[headerLen:]); !bytes.Equal(got, want) {
			t.Fatalf("accepted %x, which re-encodes as %x", got, want)
		}
	})
}
