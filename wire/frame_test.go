package wire_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"testing/iotest"

	"google.golang.org/protobuf/proto"

	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

var errTripwire = errors.New("test reader: read beyond what the frame allows")

// exactReader serves data, then zeros zero bytes, and fails the test as soon
// as the code under test asks for more than allowed bytes in total. A Read
// whose buffer reaches past allowed is read-ahead; a Read at allowed reads
// what belongs to the stream's next owner (or, for an over-cap header, the
// body that must not be read).
type exactReader struct {
	t       testing.TB
	data    []byte
	zeros   int
	allowed int
	off     int
}

func (r *exactReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.off+len(p) > r.allowed {
		r.t.Errorf("Read of %d bytes at offset %d: only %d bytes may be consumed", len(p), r.off, r.allowed)
		return 0, errTripwire
	}
	var n int
	if r.off < len(r.data) {
		n = copy(p, r.data[r.off:])
	} else {
		n = min(len(p), len(r.data)+r.zeros-r.off)
		clear(p[:n])
	}
	if n == 0 {
		return 0, io.EOF
	}
	r.off += n
	return n, nil
}

// failingReader serves data, then returns err.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestParseHeader(t *testing.T) {
	for _, c := range []struct {
		name    string
		h       []byte
		max     int
		want    int
		wantErr error // a typed error to compare with errors.As + field check
	}{
		{"empty body", header(0), wire.MaxBody, 0, nil},
		{"little endian", []byte{0x01, 0x01, 0x02, 0x03, 0x00}, wire.MaxBody, 0x030201, nil},
		{"at MaxBody", header(wire.MaxBody), wire.MaxBody, wire.MaxBody, nil},
		{"over MaxBody", header(wire.MaxBody + 1), wire.MaxBody, 0, &wire.TooLargeError{Len: wire.MaxBody + 1, Max: wire.MaxBody}},
		{"at hello cap", header(wire.MaxHelloBody), wire.MaxHelloBody, wire.MaxHelloBody, nil},
		{"over hello cap", header(wire.MaxHelloBody + 1), wire.MaxHelloBody, 0, &wire.TooLargeError{Len: wire.MaxHelloBody + 1, Max: wire.MaxHelloBody}},
		{"max 0 is MaxBody", header(wire.MaxBody + 1), 0, 0, &wire.TooLargeError{Len: wire.MaxBody + 1, Max: wire.MaxBody}},
		{"negative max is MaxBody", header(wire.MaxBody + 1), -1, 0, &wire.TooLargeError{Len: wire.MaxBody + 1, Max: wire.MaxBody}},
		{"max above MaxBody is MaxBody", header(wire.MaxBody + 1), 1 << 30, 0, &wire.TooLargeError{Len: wire.MaxBody + 1, Max: wire.MaxBody}},
		{"largest u32", header(0xffffffff), wire.MaxBody, 0, &wire.TooLargeError{Len: 0xffffffff, Max: wire.MaxBody}},
		{"framing byte checked before length", []byte{0x02, 0xff, 0xff, 0xff, 0xff}, wire.MaxBody, 0, &wire.FramingVersionError{Got: 0x02}},
		{"framing byte 0", []byte{0x00, 0x00, 0x00, 0x00, 0x00}, wire.MaxBody, 0, &wire.FramingVersionError{Got: 0x00}},
		{"nil header", nil, wire.MaxBody, 0, &wire.TruncatedError{Part: "header", Want: 5, Got: 0}},
		{"short header", []byte{0x01, 0x00, 0x00, 0x00}, wire.MaxBody, 0, &wire.TruncatedError{Part: "header", Want: 5, Got: 4}},
		{"longer slice: only 5 bytes count", append(header(3), 0xff, 0xff), wire.MaxBody, 3, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			n, err := wire.ParseHeader(c.h, c.max)
			if n != c.want {
				t.Errorf("n = %d, want %d", n, c.want)
			}
			checkFramingError(t, err, c.wantErr)
		})
	}
}

// checkFramingError compares err with a typed framing error by value and
// checks the sentinels it must (and must not) match.
func checkFramingError(t *testing.T, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("unexpected error %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error, want %v", want)
	}
	sentinels := map[error]bool{wire.ErrBadFramingVersion: false, wire.ErrFrameTooLarge: false, wire.ErrTruncated: false, io.ErrUnexpectedEOF: false}
	switch w := want.(type) {
	case *wire.FramingVersionError:
		var got *wire.FramingVersionError
		if !errors.As(err, &got) || *got != *w {
			t.Fatalf("error %#v, want %#v", err, w)
		}
		sentinels[wire.ErrBadFramingVersion] = true
	case *wire.TooLargeError:
		var got *wire.TooLargeError
		if !errors.As(err, &got) || *got != *w {
			t.Fatalf("error %#v, want %#v", err, w)
		}
		sentinels[wire.ErrFrameTooLarge] = true
	case *wire.TruncatedError:
		var got *wire.TruncatedError
		if !errors.As(err, &got) || *got != *w {
			t.Fatalf("error %#v, want %#v", err, w)
		}
		sentinels[wire.ErrTruncated] = true
		sentinels[io.ErrUnexpectedEOF] = true
	default:
		t.Fatalf("bad test: want %T", want)
	}
	for s, match := range sentinels {
		if errors.Is(err, s) != match {
			t.Errorf("errors.Is(%v, %v) = %v, want %v", err, s, !match, match)
		}
	}
	if errors.Is(err, io.EOF) {
		t.Errorf("a framing error must not look like a clean io.EOF: %v", err)
	}
}

// TestReadFrameBodyCaps checks every cap boundary: a body exactly at the cap
// is read, one byte more is refused from the header alone, with no body
// byte read and no body allocated.
func TestReadFrameBodyCaps(t *testing.T) {
	for _, c := range []struct {
		name      string
		max       int
		announced uint32
		wantMax   uint32 // the cap in force; 0 when the body is accepted
	}{
		{"MaxBody exactly", wire.MaxBody, wire.MaxBody, 0},
		{"MaxBody+1", wire.MaxBody, wire.MaxBody + 1, wire.MaxBody},
		{"MaxHelloBody exactly", wire.MaxHelloBody, wire.MaxHelloBody, 0},
		{"MaxHelloBody+1", wire.MaxHelloBody, wire.MaxHelloBody + 1, wire.MaxHelloBody},
		{"cap 1 exactly", 1, 1, 0},
		{"cap 1 plus 1", 1, 2, 1},
		{"max 0 means MaxBody", 0, wire.MaxBody + 1, wire.MaxBody},
		{"negative max means MaxBody", -5, wire.MaxBody + 1, wire.MaxBody},
		{"max above MaxBody is clamped", 4 * wire.MaxBody, wire.MaxBody + 1, wire.MaxBody},
		{"largest u32 length", wire.MaxHelloBody, 0xffffffff, wire.MaxHelloBody},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.wantMax == 0 {
				// Accepted: header then exactly announced zero bytes; a
				// Read reaching past them fails the test.
				r := &exactReader{t: t, data: header(c.announced), zeros: int(c.announced), allowed: wire.HeaderLen + int(c.announced)}
				body, err := wire.ReadFrameBody(r, c.max)
				if err != nil {
					t.Fatal(err)
				}
				if len(body) != int(c.announced) || r.off != r.allowed {
					t.Fatalf("body %d bytes, consumed %d; want %d and %d", len(body), r.off, c.announced, r.allowed)
				}
				return
			}
			// Refused: only the header may be read. The minimum over a few
			// runs filters out allocations unrelated to the call.
			minAlloc := ^uint64(0)
			for range 3 {
				r := &exactReader{t: t, data: header(c.announced), zeros: int(min(c.announced, 1<<20)), allowed: wire.HeaderLen}
				before := heapAllocBytes()
				body, err := wire.ReadFrameBody(r, c.max)
				minAlloc = min(minAlloc, heapAllocBytes()-before)
				if body != nil {
					t.Errorf("body of %d bytes returned with a refusal", len(body))
				}
				checkFramingError(t, err, &wire.TooLargeError{Len: c.announced, Max: c.wantMax})
				if r.off != wire.HeaderLen {
					t.Errorf("consumed %d bytes, want only the header", r.off)
				}
			}
			if c.announced >= 64<<10 && minAlloc >= uint64(c.announced)/2 {
				t.Errorf("refusing a %d-byte body allocated %d bytes", c.announced, minAlloc)
			}
		})
	}
}

// TestReadFrameBodyErrors covers every way a frame read can fail.
func TestReadFrameBodyErrors(t *testing.T) {
	errBoom := errors.New("boom")
	for _, c := range []struct {
		name    string
		r       io.Reader
		wantErr error // typed framing error, or a sentinel compared with errors.Is
	}{
		{"header byte 1 of 5", bytes.NewReader(header(3)[:1]), &wire.TruncatedError{Part: "header", Want: 5, Got: 1}},
		{"header byte 2 of 5", bytes.NewReader(header(3)[:2]), &wire.TruncatedError{Part: "header", Want: 5, Got: 2}},
		{"header byte 3 of 5", bytes.NewReader(header(3)[:3]), &wire.TruncatedError{Part: "header", Want: 5, Got: 3}},
		{"header byte 4 of 5", bytes.NewReader(header(3)[:4]), &wire.TruncatedError{Part: "header", Want: 5, Got: 4}},
		{"header one byte at a time", iotest.OneByteReader(bytes.NewReader(header(3)[:4])), &wire.TruncatedError{Part: "header", Want: 5, Got: 4}},
		{"no body", bytes.NewReader(header(10)), &wire.TruncatedError{Part: "body", Want: 10, Got: 0}},
		{"short body", bytes.NewReader(cat(header(10), []byte("abc"))), &wire.TruncatedError{Part: "body", Want: 10, Got: 3}},
		{"body one byte short", iotest.OneByteReader(bytes.NewReader(cat(header(10), make([]byte, 9)))), &wire.TruncatedError{Part: "body", Want: 10, Got: 9}},
		{"framing byte 0x00", bytes.NewReader(cat([]byte{0x00, 2, 0, 0, 0}, []byte{0x08, 0x01})), &wire.FramingVersionError{Got: 0x00}},
		{"framing byte 0x02", bytes.NewReader(cat([]byte{0x02, 2, 0, 0, 0}, []byte{0x08, 0x01})), &wire.FramingVersionError{Got: 0x02}},
		{"framing byte 0xff", bytes.NewReader([]byte{0xff, 0xff, 0xff, 0xff, 0xff}), &wire.FramingVersionError{Got: 0xff}},
		{"protobuf where a frame belongs", bytes.NewReader([]byte{0x08, 0x01, 0x10, 0x01, 0x22}), &wire.FramingVersionError{Got: 0x08}},
		{"reader error before header", &failingReader{err: errBoom}, errBoom},
		{"reader error inside header", &failingReader{data: header(3)[:2], err: errBoom}, errBoom},
		{"reader error inside body", &failingReader{data: cat(header(3), []byte{0x08}), err: errBoom}, errBoom},
		{"timeout inside header", iotest.TimeoutReader(iotest.OneByteReader(bytes.NewReader(header(3)))), iotest.ErrTimeout},
	} {
		t.Run(c.name, func(t *testing.T) {
			body, err := wire.ReadFrameBody(c.r, wire.MaxBody)
			if body != nil {
				t.Errorf("body %x returned with an error", body)
			}
			switch c.wantErr.(type) {
			case *wire.FramingVersionError, *wire.TooLargeError, *wire.TruncatedError:
				checkFramingError(t, err, c.wantErr)
			default:
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("error %v, want %v", err, c.wantErr)
				}
				if errors.Is(err, wire.ErrTruncated) || errors.Is(err, io.EOF) {
					t.Errorf("a reader's own error must not be reported as a truncation or EOF: %v", err)
				}
			}
		})
	}
}

// TestReadFrameBadFramingReadsOnlyHeader: a wrong framing byte is refused
// without reading the body.
func TestReadFrameBadFramingReadsOnlyHeader(t *testing.T) {
	r := &exactReader{t: t, data: cat([]byte{0x02, 2, 0, 0, 0}, []byte{0x08, 0x01}), allowed: wire.HeaderLen}
	_, err := wire.ReadFrame(r, wire.MaxBody)
	checkFramingError(t, err, &wire.FramingVersionError{Got: 0x02})
}

func TestReadFrameCleanEOF(t *testing.T) {
	for _, r := range []io.Reader{
		bytes.NewReader(nil),
		iotest.DataErrReader(bytes.NewReader(nil)),
		&failingReader{err: io.EOF},
	} {
		if body, err := wire.ReadFrameBody(r, wire.MaxBody); err != io.EOF || body != nil {
			t.Errorf("ReadFrameBody on an empty stream = %x, %v; want nil, io.EOF (unwrapped)", body, err)
		}
	}
	if f, err := wire.ReadFrame(bytes.NewReader(nil), wire.MaxBody); err != io.EOF || f != nil {
		t.Errorf("ReadFrame on an empty stream = %v, %v; want nil, io.EOF", f, err)
	}
	// After a complete frame the stream ends cleanly, too.
	r := bytes.NewReader(cat(header(2), []byte{0x08, 0x01}))
	if _, err := wire.ReadFrame(r, wire.MaxBody); err != nil {
		t.Fatal(err)
	}
	if _, err := wire.ReadFrame(r, wire.MaxBody); err != io.EOF {
		t.Errorf("second ReadFrame = %v, want io.EOF", err)
	}
}

// TestReadFrameZeroLengthBody: an empty body is legal framing; as a Frame
// it is all defaults, so DecodeFrame refuses envelope_version 0.
func TestReadFrameZeroLengthBody(t *testing.T) {
	r := bytes.NewReader(cat(header(0), []byte("next")))
	body, err := wire.ReadFrameBody(r, wire.MaxHelloBody)
	if err != nil || len(body) != 0 {
		t.Fatalf("ReadFrameBody = %x, %v; want an empty body", body, err)
	}
	if r.Len() != len("next") {
		t.Errorf("%d bytes left, want %d", r.Len(), len("next"))
	}
	_, err = wire.DecodeFrame(body)
	if v := asViolation(t, err); v.Code != pb.ErrorCode_ERROR_VERSION_UNSUPPORTED || v.Field != "envelope_version" {
		t.Errorf("DecodeFrame(empty) = %+v, want VERSION_UNSUPPORTED on envelope_version", v)
	}
	_, err = wire.ReadFrame(bytes.NewReader(header(0)), wire.MaxHelloBody)
	if v := asViolation(t, err); v.Code != pb.ErrorCode_ERROR_VERSION_UNSUPPORTED {
		t.Errorf("ReadFrame(empty) = %+v, want VERSION_UNSUPPORTED", v)
	}
}

// TestReadFrameReaderShapes: frames arrive intact however the reader splits
// them.
func TestReadFrameReaderShapes(t *testing.T) {
	s := sampleNamed("hello")
	enc, err := wire.EncodeFrame(s.frame)
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]io.Reader{
		"one byte":        iotest.OneByteReader(bytes.NewReader(enc)),
		"half":            iotest.HalfReader(bytes.NewReader(enc)),
		"data with EOF":   iotest.DataErrReader(bytes.NewReader(enc)),
		"strict exact":    &exactReader{t: t, data: enc, allowed: len(enc)},
		"timeout in body": iotest.TimeoutReader(bytes.NewReader(enc)), // the header is one Read, the body Read times out
	} {
		t.Run(name, func(t *testing.T) {
			f, err := wire.ReadFrame(r, wire.MaxHelloBody)
			if name == "timeout in body" {
				if !errors.Is(err, iotest.ErrTimeout) {
					t.Fatalf("err = %v, want the reader's timeout", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(f, s.frame) {
				t.Errorf("got %v, want %v", f, s.frame)
			}
		})
	}
}

// TestNoReadAheadBytesReader: after each frame, exactly the bytes of the
// following frames and the pipelined tail are left in the reader.
func TestNoReadAheadBytesReader(t *testing.T) {
	tail := []byte("PIPELINED-APPLICATION-BYTES")
	var stream []byte
	all := samples()
	for _, s := range all {
		var err error
		if stream, err = wire.AppendFrame(stream, s.frame); err != nil {
			t.Fatal(err)
		}
	}
	stream = append(stream, tail...)
	r := bytes.NewReader(stream)
	consumed := 0
	for _, s := range all {
		enc, _ := wire.EncodeFrame(s.frame)
		consumed += len(enc)
		body, err := wire.ReadFrameBody(r, wire.MaxBody)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if !bytes.Equal(body, enc[wire.HeaderLen:]) {
			t.Errorf("%s: body %x, want %x", s.name, body, enc[wire.HeaderLen:])
		}
		if r.Len() != len(stream)-consumed {
			t.Fatalf("%s: %d bytes left, want %d: ReadFrameBody read ahead", s.name, r.Len(), len(stream)-consumed)
		}
	}
	rest, _ := io.ReadAll(r)
	if !bytes.Equal(rest, tail) {
		t.Errorf("tail %q, want %q", rest, tail)
	}

	// Same through ReadFrame, with a reader that fails on any Read whose
	// buffer reaches past the Hello frame.
	hello, _ := wire.EncodeFrame(sampleNamed("hello").frame)
	er := &exactReader{t: t, data: cat(hello, tail), allowed: len(hello)}
	if _, err := wire.ReadFrame(er, wire.MaxHelloBody); err != nil {
		t.Fatal(err)
	}
	br := bytes.NewReader(cat(hello, tail))
	if _, err := wire.ReadFrame(br, wire.MaxHelloBody); err != nil {
		t.Fatal(err)
	}
	if br.Len() != len(tail) {
		t.Errorf("ReadFrame left %d bytes, want %d", br.Len(), len(tail))
	}
}

// TestNoReadAheadPipe: the client writes its Hello, a second frame and
// application bytes in one Write on a synchronous in-memory connection; the
// reader takes two frames and the application bytes are still there.
func TestNoReadAheadPipe(t *testing.T) {
	checkNoReadAheadConn(t, net.Pipe)
}

// checkNoReadAheadConn runs the pipelining scenario over a connected pair.
func checkNoReadAheadConn(t *testing.T, pair func() (net.Conn, net.Conn)) {
	t.Helper()
	hello, ready := sampleNamed("hello"), sampleNamed("handoff_ready_event")
	tail := []byte(strings.Repeat("application bytes after the hello; ", 20))
	var out []byte
	out, _ = wire.AppendFrame(out, hello.frame)
	out, _ = wire.AppendFrame(out, ready.frame)
	out = append(out, tail...)

	client, server := pair()
	defer server.Close()
	done := make(chan error, 1)
	go func() {
		_, err := client.Write(out) // one Write: all bytes are queued together
		client.Close()
		done <- err
	}()
	f1, err := wire.ReadFrame(server, wire.MaxHelloBody)
	if err != nil {
		t.Fatal(err)
	}
	f2, err := wire.ReadFrame(server, wire.MaxBody)
	if err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(server)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(f1, hello.frame) || !proto.Equal(f2, ready.frame) {
		t.Errorf("frames %v, %v; want %v, %v", f1, f2, hello.frame, ready.frame)
	}
	if !bytes.Equal(rest, tail) {
		t.Errorf("after two frames the connection held %d bytes, want the %d-byte tail", len(rest), len(tail))
	}
}

func TestAppendFrame(t *testing.T) {
	s := sampleNamed("hello")
	enc, err := wire.EncodeFrame(s.frame)
	if err != nil {
		t.Fatal(err)
	}
	prefix := []byte("prefix")
	got, err := wire.AppendFrame(prefix, s.frame)
	if err != nil || !bytes.Equal(got, cat([]byte("prefix"), enc)) {
		t.Fatalf("AppendFrame = %x, %v", got, err)
	}

	// Deterministic: the same frame always encodes the same.
	for range 10 {
		again, _ := wire.EncodeFrame(s.frame)
		if !bytes.Equal(again, enc) {
			t.Fatalf("encoding not deterministic: %x vs %x", again, enc)
		}
	}

	// A string field with invalid UTF-8 cannot be encoded; dst comes back
	// as it was, even when it has room for the partial frame.
	dst := make([]byte, 3, 64)
	copy(dst, "abc")
	out, err := wire.AppendFrame(dst, &pb.Frame{EnvelopeVersion: 1, Traceparent: "\xff"})
	if err == nil {
		t.Fatal("invalid UTF-8 encoded without error")
	}
	if string(out) != "abc" {
		t.Errorf("on error AppendFrame returned %q, want the unchanged %q", out, "abc")
	}
	if err := wire.WriteFrame(io.Discard, &pb.Frame{EnvelopeVersion: 1, Tracestate: "\xc3"}); err == nil {
		t.Error("WriteFrame encoded invalid UTF-8")
	}
}

// TestEncodeFrameCap: a frame whose body is exactly MaxBody is written and
// read back; one byte more is refused before anything is encoded.
func TestEncodeFrameCap(t *testing.T) {
	// Body = 08 01 (envelope_version) + 22 (payload tag) + 4-byte length
	// varint + payload, so a payload of MaxBody-7 makes the body MaxBody.
	payload := make([]byte, wire.MaxBody-6)
	payload[0], payload[len(payload)-2] = 0xaa, 0xbb
	f := &pb.Frame{EnvelopeVersion: 1, Payload: payload[:wire.MaxBody-7]}
	enc, err := wire.EncodeFrame(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(enc) != wire.HeaderLen+wire.MaxBody || !bytes.Equal(enc[:wire.HeaderLen], header(wire.MaxBody)) {
		t.Fatalf("encoded %d bytes with header %x", len(enc), enc[:wire.HeaderLen])
	}
	back, err := wire.ReadFrame(bytes.NewReader(enc), wire.MaxBody)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.GetPayload()) != wire.MaxBody-7 || back.GetPayload()[0] != 0xaa || back.GetPayload()[wire.MaxBody-8] != 0xbb {
		t.Errorf("payload did not survive (len %d)", len(back.GetPayload()))
	}
	if _, err := wire.ReadFrame(bytes.NewReader(enc), wire.MaxHelloBody); !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Errorf("16 MiB frame under the Hello cap: %v", err)
	}
	enc, back = nil, nil

	f.Payload = payload
	dst := []byte("keep")
	out, err := wire.AppendFrame(dst, f)
	checkFramingError(t, err, &wire.TooLargeError{Len: wire.MaxBody + 1, Max: wire.MaxBody})
	if string(out) != "keep" {
		t.Errorf("AppendFrame over the cap returned %q", out)
	}
	var w countingWriter
	if err := wire.WriteFrame(&w, f); !errors.Is(err, wire.ErrFrameTooLarge) || w.calls != 0 {
		t.Errorf("WriteFrame over the cap: err %v after %d writes", err, w.calls)
	}
}

// countingWriter records how many Write calls it got.
type countingWriter struct {
	calls int
	buf   bytes.Buffer
	err   error
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.calls++
	if w.err != nil {
		return 0, w.err
	}
	return w.buf.Write(p)
}

// TestWriteFrame: a frame leaves in exactly one Write, so concurrent writers
// on a stream socket cannot interleave inside it.
func TestWriteFrame(t *testing.T) {
	for _, s := range samples() {
		var w countingWriter
		if err := wire.WriteFrame(&w, s.frame); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		enc, _ := wire.EncodeFrame(s.frame)
		if w.calls != 1 || !bytes.Equal(w.buf.Bytes(), enc) {
			t.Errorf("%s: %d writes of %x, want one of %x", s.name, w.calls, w.buf.Bytes(), enc)
		}
	}
	errBoom := errors.New("boom")
	w := countingWriter{err: errBoom}
	if err := wire.WriteFrame(&w, sampleNamed("frame_minimal").frame); !errors.Is(err, errBoom) {
		t.Errorf("writer error: %v", err)
	}
}

func TestFramingErrorMessages(t *testing.T) {
	for _, c := range []struct {
		err  error
		want []string
	}{
		{&wire.FramingVersionError{Got: 0x02}, []string{"0x02", "0x01"}},
		{&wire.TooLargeError{Len: wire.MaxHelloBody + 1, Max: wire.MaxHelloBody}, []string{"65537", "65536"}},
		{&wire.TruncatedError{Part: "body", Want: 10, Got: 3}, []string{"body", "3 of 10"}},
	} {
		msg := c.err.Error()
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%q does not mention %q", msg, w)
			}
		}
	}
}
