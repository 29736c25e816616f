package wire_test

import (
	"bytes"
	"testing"

	"github.com/portier/portier/wire"
)

// BenchmarkEncodeFrame encodes the sample Hello frame into a reused buffer.
func BenchmarkEncodeFrame(b *testing.B) {
	f := sampleNamed("hello").frame
	buf := must(wire.EncodeFrame(f))
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = wire.AppendFrame(buf[:0], f); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadFrame reads and decodes a Hello frame the way a broker takes
// a new connection's first frame: ReadFrame under the Hello cap, then
// DecodeHello on its payload.
func BenchmarkReadFrame(b *testing.B) {
	enc := must(wire.EncodeFrame(sampleNamed("hello").frame))
	r := bytes.NewReader(enc)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(enc)
		f, err := wire.ReadFrame(r, wire.MaxHelloBody)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := wire.DecodeHello(f.GetPayload()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkValidateHello validates the sample Hello (every field set, so
// every rule runs).
func BenchmarkValidateHello(b *testing.B) {
	h := sampleHello()
	b.ReportAllocs()
	for b.Loop() {
		if r := wire.ValidateHello(h, 4242); r != nil {
			b.Fatal(r)
		}
	}
}
