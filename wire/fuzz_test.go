package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// countingReader serves data and counts the bytes handed out.
type countingReader struct {
	data     []byte
	consumed int
}

func (r *countingReader) Read(p []byte) (int, error) {
	if r.consumed == len(r.data) {
		return 0, io.EOF
	}
	n := copy(p, r.data[r.consumed:])
	r.consumed += n
	return n, nil
}

// FuzzReadFrame reads one frame from arbitrary bytes under a cap of
// 1..65536 (maxSeed+1). It never panics, consumes exactly what the header
// entitles it to (never a byte past header+length, only the header when the
// length is over the cap), never allocates for an over-cap length, and
// returns the error the bytes call for.
func FuzzReadFrame(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, maxSeed uint16) {
		limit := int(maxSeed) + 1
		r := &countingReader{data: data}
		before := heapAllocBytes()
		body, err := wire.ReadFrameBody(r, limit)
		// Over-cap lengths reach 4 GiB; a body allocation of that kind is
		// far above this bound, while legitimate use stays under limit.
		if allocated := heapAllocBytes() - before; allocated > uint64(limit)+1<<20 {
			t.Fatalf("allocated %d bytes under a %d-byte cap", allocated, limit)
		}

		wantConsumed := len(data)
		var wantErr error
		switch {
		case len(data) == 0:
			if err != io.EOF {
				t.Fatalf("empty input: err %v, want io.EOF", err)
			}
		case len(data) < wire.HeaderLen:
			wantErr = &wire.TruncatedError{Part: "header", Want: wire.HeaderLen, Got: len(data)}
		case data[0] != wire.FramingVersion:
			wantErr, wantConsumed = &wire.FramingVersionError{Got: data[0]}, wire.HeaderLen
		default:
			n := binary.LittleEndian.Uint32(data[1:wire.HeaderLen])
			switch have := len(data) - wire.HeaderLen; {
			case uint64(n) > uint64(limit):
				wantErr, wantConsumed = &wire.TooLargeError{Len: n, Max: uint32(limit)}, wire.HeaderLen
			case have < int(n):
				wantErr = &wire.TruncatedError{Part: "body", Want: int(n), Got: have}
			default:
				wantConsumed = wire.HeaderLen + int(n)
				if err != nil || !bytes.Equal(body, data[wire.HeaderLen:wantConsumed]) {
					t.Fatalf("ReadFrameBody = %x, %v; want %x", body, err, data[wire.HeaderLen:wantConsumed])
				}
			}
		}
		if wantErr != nil {
			checkFramingError(t, err, wantErr)
			if body != nil {
				t.Fatalf("body %x returned with %v", body, err)
			}
		}
		if r.consumed != wantConsumed {
			t.Fatalf("consumed %d bytes, want %d", r.consumed, wantConsumed)
		}
		if len(body) > limit {
			t.Fatalf("body of %d bytes over the %d-byte cap", len(body), limit)
		}
	})
}

// FuzzDecodeFrame decodes arbitrary bodies. A refusal is a *Violation with
// a protocol code and an encodable Refused; an accepted frame passes the
// envelope rules, and re-encodes to a frame that decodes equal and
// re-encodes to the same bytes.
func FuzzDecodeFrame(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		fr, err := wire.DecodeFrame(body)
		if err != nil {
			if fr != nil {
				t.Fatalf("frame %v returned with %v", fr, err)
			}
			v := asViolation(t, err)
			checkRefusal(t, v.Refused(), pb.ErrorCode_ERROR_PEER_REJECTED, pb.ErrorCode_ERROR_VERSION_UNSUPPORTED)
			// Only the envelope version is a version error; a v1 peer that
			// breaks a v1 rule is rejected.
			if (v.Code == pb.ErrorCode_ERROR_VERSION_UNSUPPORTED) != (v.Field == "envelope_version") {
				t.Fatalf("%v on field %q: only envelope_version is VERSION_UNSUPPORTED", v.Code, v.Field)
			}
			return
		}
		if err := wire.CheckEnvelope(fr); err != nil {
			t.Fatalf("accepted frame fails CheckEnvelope: %v", err)
		}
		if fr.GetEnvelopeVersion() != wire.EnvelopeVersion || fr.GetKind() < 0 || fr.GetKind() > 3 ||
			!wire.KnownPayloadProtocol(fr.GetPayloadProtocol()) || fr.GetPayloadEncoding() != pb.PayloadEncoding_PAYLOAD_ENCODING_NONE {
			t.Fatalf("accepted frame breaks an envelope rule: %v", fr)
		}
		enc, err := wire.EncodeFrame(fr)
		if err != nil {
			t.Fatalf("accepted frame cannot be re-encoded: %v", err)
		}
		back, err := wire.ReadFrame(bytes.NewReader(enc), wire.MaxBody)
		if err != nil {
			t.Fatalf("re-encoded frame refused: %v", err)
		}
		if !proto.Equal(fr, back) {
			t.Fatalf("re-encoded frame decodes to %v, want %v", back, fr)
		}
		if enc2, err := wire.EncodeFrame(back); err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable: %x then %x (%v)", enc, enc2, err)
		}
	})
}

// FuzzValidateHello decodes and validates arbitrary Hello payloads against
// arbitrary kernel pids. It never panics; the validators agree with the
// spec's patterns; an accepted Hello satisfies every rule; a refusal names
// a field and can be sent.
func FuzzValidateHello(f *testing.F) {
	f.Fuzz(func(t *testing.T, payload []byte, kernelPID int32) {
		h, err := wire.DecodeHello(payload)
		if err != nil {
			if h != nil {
				t.Fatalf("Hello %v returned with %v", h, err)
			}
			checkRefusal(t, asViolation(t, err).Refused(), pb.ErrorCode_ERROR_PEER_REJECTED)
			return
		}
		if name := h.GetServiceName(); wire.ValidServiceName(name) != specServiceName(name) {
			t.Fatalf("ValidServiceName(%q) disagrees with the pattern", name)
		}
		if v := h.GetWantedVersion(); wire.ValidVersion(v) != specVersion(v) {
			t.Fatalf("ValidVersion(%q) disagrees with the pattern", v)
		}
		r := wire.ValidateHello(h, int(kernelPID))
		if r != nil {
			checkRefusal(t, r, pb.ErrorCode_ERROR_PEER_REJECTED, pb.ErrorCode_ERROR_VERSION_UNSUPPORTED)
			if r.GetDetails()["field"] == "" {
				t.Fatalf("refusal names no field: %v", r)
			}
			// The protocol range is checked before anything else: a Hello
			// outside it is VERSION_UNSUPPORTED whatever its other fields.
			outside := h.GetClientMinProtocol() > wire.ProtocolVersion || h.GetClientMaxProtocol() < wire.ProtocolVersion ||
				h.GetClientMinProtocol() > h.GetClientMaxProtocol()
			if outside != (r.GetCode() == pb.ErrorCode_ERROR_VERSION_UNSUPPORTED) {
				t.Fatalf("protocols %d..%d refused %v", h.GetClientMinProtocol(), h.GetClientMaxProtocol(), r)
			}
			return
		}
		switch {
		case !wire.ValidServiceName(h.GetServiceName()):
			t.Fatalf("accepted service_name %q", h.GetServiceName())
		case !wire.ValidVersion(h.GetWantedVersion()):
			t.Fatalf("accepted wanted_version %q", h.GetWantedVersion())
		case len(h.GetClientVersion()) > wire.MaxClientVersion,
			len(h.GetClientLibName()) > wire.MaxClientLib,
			len(h.GetClientLibVersion()) > wire.MaxClientLib,
			len(h.GetRequestId()) > wire.MaxRequestID,
			len(h.GetAuthToken()) > wire.MaxOpaqueHelloField,
			len(h.GetPeerAttestationNonce()) > wire.MaxOpaqueHelloField,
			len(h.GetCapabilityToken()) > wire.MaxOpaqueHelloField:
			t.Fatalf("accepted a field over its length cap: %v", h)
		case h.GetConnectionId() != 0:
			t.Fatalf("accepted connection_id %d", h.GetConnectionId())
		case h.GetPeerPid() != 0 && kernelPID != 0 && int64(h.GetPeerPid()) != int64(kernelPID):
			t.Fatalf("accepted peer_pid %d from kernel pid %d", h.GetPeerPid(), kernelPID)
		case h.GetClientMinProtocol() > wire.ProtocolVersion || h.GetClientMaxProtocol() < wire.ProtocolVersion:
			t.Fatalf("accepted protocols %d..%d", h.GetClientMinProtocol(), h.GetClientMaxProtocol())
		}
		if size := proto.Size(stripUnknown(h)); size > wire.MaxHelloBody {
			t.Fatalf("accepted Hello of %d bytes does not fit the first-frame cap", size)
		}
	})
}

// FuzzDecodeHandoffOffer decodes arbitrary offers: a refusal is
// PEER_REJECTED, an accepted offer has a 16-byte token, a valid service name
// and a correlation id, and survives a re-encoding.
func FuzzDecodeHandoffOffer(f *testing.F) {
	f.Fuzz(func(t *testing.T, payload []byte) {
		wire.OfferHandleValue(wire.ProtocolHandoff, payload) // never panics, whatever the payload
		o, err := wire.DecodeHandoffOffer(payload)
		if err != nil {
			if o != nil {
				t.Fatalf("offer %v returned with %v", o, err)
			}
			checkRefusal(t, asViolation(t, err).Refused(), pb.ErrorCode_ERROR_PEER_REJECTED)
			return
		}
		if len(o.GetToken()) != wire.TokenLen || !wire.ValidServiceName(o.GetServiceName()) || o.GetCorrelationId() == 0 {
			t.Fatalf("accepted an invalid offer: %v", o)
		}
		if v := wire.OfferHandleValue(wire.ProtocolHandoff, payload); v != o.GetHandleValue() {
			t.Fatalf("OfferHandleValue = %#x, the offer names %#x", v, o.GetHandleValue())
		}
		enc, err := wire.Marshal(o)
		if err != nil {
			t.Fatalf("accepted offer cannot be re-encoded: %v", err)
		}
		back, err := wire.DecodeHandoffOffer(enc)
		if err != nil || !proto.Equal(o, back) {
			t.Fatalf("re-encoded offer: %v, %v; want %v", back, err, o)
		}
	})
}

// FuzzTraceContext passes arbitrary trace context through TraceContext, as
// a receiver does before echoing it or handing it to a backend. What comes
// out is empty or valid: a W3C traceparent within its cap, of nothing but
// lowercase hex and dashes (so never a NUL, a newline or a shell
// metacharacter), with a tracestate only beside a valid traceparent; and a
// response built from the frame carries exactly that.
func FuzzTraceContext(f *testing.F) {
	f.Fuzz(func(t *testing.T, traceparent, tracestate string) {
		fr := &pb.Frame{Traceparent: traceparent, Tracestate: tracestate}
		tp, ts := wire.TraceContext(fr)
		if wire.ValidTraceparent(traceparent) != specTraceparent(traceparent) {
			t.Fatalf("ValidTraceparent(%q) disagrees with the spec rule", traceparent)
		}
		switch {
		case tp == "" && ts != "":
			t.Fatalf("tracestate %q passed on without a traceparent", ts)
		case tp != "" && (tp != traceparent || !wire.ValidTraceparent(tp) || len(tp) > wire.MaxTraceparent):
			t.Fatalf("traceparent %q passed on as %q", traceparent, tp)
		case ts != "" && (ts != tracestate || !wire.ValidTracestate(ts)):
			t.Fatalf("tracestate %q passed on as %q", tracestate, ts)
		case tp == "" && wire.ValidTraceparent(traceparent):
			t.Fatalf("valid traceparent %q dropped", traceparent)
		}
		if strings.Trim(tp, "0123456789abcdef-") != "" {
			t.Fatalf("traceparent %q passed on with a byte outside [0-9a-f-]", tp)
		}
		resp, err := wire.NewResponse(fr, wire.ProtocolControl, &pb.HelloReply{})
		if err != nil {
			t.Fatalf("response cannot be built: %v", err)
		}
		if resp.GetTraceparent() != tp || resp.GetTracestate() != ts {
			t.Fatalf("response carries %q, %q; want %q, %q", resp.GetTraceparent(), resp.GetTracestate(), tp, ts)
		}
		if _, err := wire.EncodeFrame(resp); err != nil {
			t.Fatalf("response cannot be encoded: %v", err)
		}
	})
}

// checkRefusal: a refusal has one of the allowed codes, a reason, the
// broker's protocol range, and can be encoded (so it can be sent).
func checkRefusal(t *testing.T, r *pb.Refused, codes ...pb.ErrorCode) {
	t.Helper()
	if !slices.Contains(codes, r.GetCode()) || r.GetReason() == "" ||
		r.GetDaemonMinProtocol() != wire.ProtocolVersion || r.GetDaemonMaxProtocol() != wire.ProtocolVersion {
		t.Fatalf("bad refusal %v (allowed codes %v)", r, codes)
	}
	if _, err := wire.Marshal(&pb.HelloReply{Result: &pb.HelloReply_Refused{Refused: r}}); err != nil {
		t.Fatalf("refusal cannot be encoded: %v", err)
	}
}

// fuzzSeed is one committed seed input of a fuzz target.
type fuzzSeed struct {
	target string
	name   string
	args   []any // []byte, string, uint16 or int32, in the target's parameter order
}

// fuzzSeeds are the seed corpus under testdata/fuzz: every sample, its
// boundary variants, and each kind of refusal.
func fuzzSeeds() []fuzzSeed {
	var seeds []fuzzSeed
	add := func(target, name string, args ...any) {
		seeds = append(seeds, fuzzSeed{target, "seed-" + name, args})
	}
	all := samples()
	helloEnc := must(wire.EncodeFrame(sampleNamed("hello").frame))
	helloBody := helloEnc[wire.HeaderLen:]
	helloPayload := sampleNamed("hello").frame.GetPayload()
	offerPayload := sampleNamed("handoff_offer").frame.GetPayload()

	// FuzzReadFrame: complete frames, caps, and every framing failure.
	for _, s := range all {
		add("FuzzReadFrame", s.name, must(wire.EncodeFrame(s.frame)), uint16(wire.MaxHelloBody-1))
	}
	add("FuzzReadFrame", "hello-at-cap", helloEnc, uint16(len(helloBody)-1))
	add("FuzzReadFrame", "hello-over-cap", helloEnc, uint16(len(helloBody)-2))
	add("FuzzReadFrame", "hello-then-pipelined", cat(helloEnc, []byte("GET / HTTP/1.1\r\n")), uint16(wire.MaxHelloBody-1))
	add("FuzzReadFrame", "empty", []byte{}, uint16(0))
	add("FuzzReadFrame", "truncated-header", helloEnc[:3], uint16(1024))
	add("FuzzReadFrame", "truncated-body", helloEnc[:len(helloEnc)-1], uint16(1024))
	add("FuzzReadFrame", "bad-framing-byte", cat([]byte{0x02}, helloEnc[1:]), uint16(1024))
	add("FuzzReadFrame", "max-length", []byte{0x01, 0xff, 0xff, 0xff, 0xff, 0x00}, uint16(1024))
	add("FuzzReadFrame", "zero-length", header(0), uint16(0))

	// FuzzDecodeFrame: sample bodies and envelope violations.
	for _, s := range all {
		add("FuzzDecodeFrame", s.name, must(wire.Marshal(s.frame)))
	}
	add("FuzzDecodeFrame", "envelope-2", must(wire.Marshal(&pb.Frame{EnvelopeVersion: 2})))
	add("FuzzDecodeFrame", "kind-4", must(wire.Marshal(&pb.Frame{EnvelopeVersion: 1, Kind: 4})))
	add("FuzzDecodeFrame", "protocol-unregistered", must(wire.Marshal(&pb.Frame{EnvelopeVersion: 1, PayloadProtocol: 0x1234})))
	add("FuzzDecodeFrame", "encoding-zstd", must(wire.Marshal(&pb.Frame{EnvelopeVersion: 1, PayloadEncoding: pb.PayloadEncoding_PAYLOAD_ENCODING_ZSTD})))
	add("FuzzDecodeFrame", "unknown-fields", cat(helloBody, protowire.AppendVarint([]byte{0x50}, 1), []byte{0xfa, 0x06, 0x01, 0x00}))
	add("FuzzDecodeFrame", "truncated", helloBody[:len(helloBody)/2])
	add("FuzzDecodeFrame", "invalid-utf8", []byte{0x08, 0x01, 0x42, 0x01, 0xff})

	// FuzzValidateHello: the valid sample and one payload per rule.
	hello := func(mod func(h *pb.Hello)) []byte {
		h := sampleHello()
		mod(h)
		return must(wire.Marshal(h))
	}
	add("FuzzValidateHello", "valid", helloPayload, int32(4242))
	add("FuzzValidateHello", "kernel-pid-unknown", helloPayload, int32(0))
	add("FuzzValidateHello", "pid-mismatch", helloPayload, int32(4243))
	add("FuzzValidateHello", "empty", []byte{}, int32(0))
	add("FuzzValidateHello", "uppercase-name", hello(func(h *pb.Hello) { h.ServiceName = "Echo" }), int32(4242))
	add("FuzzValidateHello", "long-name", hello(func(h *pb.Hello) { h.ServiceName = strings.Repeat("a", 65) }), int32(4242))
	add("FuzzValidateHello", "prerelease", hello(func(h *pb.Hello) { h.WantedVersion = "1.2.3-rc.1" }), int32(4242))
	add("FuzzValidateHello", "bad-version", hello(func(h *pb.Hello) { h.WantedVersion = "1.2.3-" }), int32(4242))
	add("FuzzValidateHello", "long-client-version", hello(func(h *pb.Hello) { h.ClientVersion = strings.Repeat("v", 129) }), int32(4242))
	add("FuzzValidateHello", "connection-id", hello(func(h *pb.Hello) { h.ConnectionId = 1 }), int32(4242))
	add("FuzzValidateHello", "min-over-max", hello(func(h *pb.Hello) { h.ClientMinProtocol = 2 }), int32(4242))
	add("FuzzValidateHello", "max-under-1", hello(func(h *pb.Hello) { h.ClientMinProtocol, h.ClientMaxProtocol = 0, 0 }), int32(4242))
	add("FuzzValidateHello", "malformed", helloPayload[:len(helloPayload)-1], int32(4242))
	add("FuzzValidateHello", "no-version", hello(func(h *pb.Hello) { h.WantedVersion = "" }), int32(4242))
	add("FuzzValidateHello", "any-version", hello(func(h *pb.Hello) { h.WantedVersion, h.ClientCapabilities = wire.AnyVersion, wire.CapAnyVersion }), int32(4242))
	add("FuzzValidateHello", "protocol-2-bad-name", hello(func(h *pb.Hello) { h.ClientMinProtocol, h.ClientMaxProtocol, h.ServiceName = 2, 2, "Echo" }), int32(4242))

	// FuzzTraceContext: valid and invalid trace context of each kind.
	tid, pid := sampleTraceparent[3:35], sampleTraceparent[36:52]
	add("FuzzTraceContext", "valid", sampleTraceparent, sampleTracestate)
	add("FuzzTraceContext", "empty", "", "")
	add("FuzzTraceContext", "tracestate-alone", "", sampleTracestate)
	add("FuzzTraceContext", "nul", sampleTraceparent[:10]+"\x00"+sampleTraceparent[11:], sampleTracestate)
	add("FuzzTraceContext", "uppercase", strings.ToUpper(sampleTraceparent), "")
	add("FuzzTraceContext", "zero-trace-id", "00-"+strings.Repeat("0", 32)+"-"+pid+"-01", "")
	add("FuzzTraceContext", "zero-parent-id", "00-"+tid+"-"+strings.Repeat("0", 16)+"-01", "")
	add("FuzzTraceContext", "version-ff", "ff-"+tid+"-"+pid+"-01", "")
	add("FuzzTraceContext", "v00-tail", sampleTraceparent+"-00", "")
	add("FuzzTraceContext", "later-version", "cc-"+tid+"-"+pid+"-01-abc", "")
	add("FuzzTraceContext", "long", sampleTraceparent+strings.Repeat("a", 600), "")
	add("FuzzTraceContext", "bad-tracestate", sampleTraceparent, "a=\n")

	// FuzzDecodeHandoffOffer: valid offers and one per rule.
	offer := func(mod func(o *pb.HandoffOffer)) []byte {
		o := proto.Clone(sampleNamed("handoff_offer").msg).(*pb.HandoffOffer)
		mod(o)
		return must(wire.Marshal(o))
	}
	add("FuzzDecodeHandoffOffer", "valid", offerPayload)
	add("FuzzDecodeHandoffOffer", "windows", sampleNamed("handoff_offer_windows").frame.GetPayload())
	add("FuzzDecodeHandoffOffer", "short-token", offer(func(o *pb.HandoffOffer) { o.Token = o.Token[:15] }))
	add("FuzzDecodeHandoffOffer", "bad-service", offer(func(o *pb.HandoffOffer) { o.ServiceName = "Echo" }))
	add("FuzzDecodeHandoffOffer", "zero-correlation", offer(func(o *pb.HandoffOffer) { o.CorrelationId = 0 }))
	add("FuzzDecodeHandoffOffer", "empty", []byte{})
	add("FuzzDecodeHandoffOffer", "malformed", offerPayload[:5])
	return seeds
}

// marshalSeed renders a seed in the "go test fuzz v1" corpus file format.
func marshalSeed(args []any) []byte {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch a := a.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%s)\n", quoteBytes(a))
		case uint16:
			fmt.Fprintf(&b, "uint16(%d)\n", a)
		case int32:
			fmt.Fprintf(&b, "int32(%d)\n", a)
		case string:
			fmt.Fprintf(&b, "string(%s)\n", quoteBytes([]byte(a)))
		default:
			panic(fmt.Sprintf("seed argument of type %T", a))
		}
	}
	return b.Bytes()
}

// quoteBytes writes b as a Go string literal with every byte that is not
// printable ASCII as \xNN, so a seed reads the same in any editor.
func quoteBytes(b []byte) string {
	var s strings.Builder
	s.WriteByte('"')
	for _, c := range b {
		switch {
		case c == '"' || c == '\\':
			s.WriteByte('\\')
			s.WriteByte(c)
		case c >= 0x20 && c < 0x7f:
			s.WriteByte(c)
		default:
			fmt.Fprintf(&s, "\\x%02x", c)
		}
	}
	s.WriteByte('"')
	return s.String()
}

// TestFuzzSeedCorpus keeps the committed seeds in step with the samples
// (-update rewrites them). The fuzz engine itself runs every seed as a
// subtest of its target on each plain `go test`.
func TestFuzzSeedCorpus(t *testing.T) {
	for _, s := range slices.Concat(fuzzSeeds(), decodeFuzzSeeds()) {
		path := filepath.Join("testdata", "fuzz", s.target, s.name)
		want := marshalSeed(s.args)
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is missing (regenerate with -update)", path)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale (regenerate with -update)", path)
		}
	}
}
