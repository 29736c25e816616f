package wire_test

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// TestRoundTrip sends every sample message through WriteFrame and ReadFrame
// and decodes its payload again.
func TestRoundTrip(t *testing.T) {
	for _, s := range samples() {
		if s.invalid {
			continue
		}
		t.Run(s.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := wire.WriteFrame(&buf, s.frame); err != nil {
				t.Fatal(err)
			}
			f, err := wire.ReadFrame(&buf, wire.MaxBody)
			if err != nil {
				t.Fatal(err)
			}
			if buf.Len() != 0 {
				t.Errorf("%d bytes left over", buf.Len())
			}
			if !proto.Equal(f, s.frame) {
				t.Errorf("frame %v, want %v", f, s.frame)
			}
			if s.msg == nil {
				return
			}
			var m proto.Message
			switch s.msg.(type) {
			case *pb.Hello:
				m, err = wire.DecodeHello(f.GetPayload())
			case *pb.HandoffOffer:
				m, err = wire.DecodeHandoffOffer(f.GetPayload())
			case *pb.HandoffAck:
				m, err = wire.DecodeHandoffAck(f.GetPayload())
			default:
				m = s.msg.ProtoReflect().New().Interface()
				err = proto.Unmarshal(f.GetPayload(), m)
			}
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(m, s.msg) {
				t.Errorf("payload %v, want %v", m, s.msg)
			}
		})
	}
}

// TestRoundTripOneofs checks each oneof arm survives and is the arm that was
// sent (an empty message in a oneof is still "set").
func TestRoundTripOneofs(t *testing.T) {
	byName := map[string]sample{}
	for _, s := range samples() {
		byName[s.name] = s
	}
	decode := func(name string, m proto.Message) {
		t.Helper()
		if err := proto.Unmarshal(byName[name].frame.GetPayload(), m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	var hr pb.HelloReply
	decode("hello_reply_negotiated", &hr)
	if n := hr.GetNegotiated(); n == nil || n.GetConnectionId() != 1 || !bytes.Equal(n.GetHandlePassedToken(), tok) || len(n.GetWarnings()) != 2 {
		t.Errorf("negotiated: %v", &hr)
	}
	decode("hello_reply_refused", &hr)
	if r := hr.GetRefused(); r == nil || len(r.GetDetails()) != 1 || r.GetDetails()["service_name"] != "nope" || r.GetRetryAfterMs() != 250 {
		t.Errorf("refused: %v", &hr)
	}
	var bc pb.BackendControl
	decode("backend_register", &bc)
	if r := bc.GetRegister(); r == nil || !r.GetHandoffCapable() || r.GetPid() != 4243 {
		t.Errorf("register: %v", &bc)
	}
	decode("backend_register_reply", &bc)
	if r := bc.GetRegisterReply(); r == nil || !r.GetAccepted() {
		t.Errorf("register_reply: %v", &bc)
	}
	decode("backend_register_refused", &bc)
	if r := bc.GetRegisterReply(); r == nil || r.GetAccepted() || r.GetCode() != pb.ErrorCode_ERROR_PEER_REJECTED {
		t.Errorf("register_reply refused: %v", &bc)
	}
	decode("backend_quiesce", &bc)
	if bc.GetQuiesce() == nil {
		t.Errorf("quiesce: %v", &bc)
	}
	decode("backend_unregister", &bc)
	if bc.GetUnregister() == nil {
		t.Errorf("unregister: %v", &bc)
	}
	var ar pb.AdminRequest
	decode("admin_request_status", &ar)
	if ar.GetStatus() == nil {
		t.Errorf("status request: %v", &ar)
	}
	decode("admin_request_metrics", &ar)
	if ar.GetMetrics() == nil {
		t.Errorf("metrics request: %v", &ar)
	}
	var as pb.AdminResponse
	decode("admin_response_status", &as)
	if st := as.GetStatus(); st == nil || len(st.GetBackends()) != 1 || st.GetBackends()[0].GetState() != "ready" {
		t.Errorf("status: %v", &as)
	}
	decode("admin_response_metrics", &as)
	if !strings.Contains(as.GetMetricsText(), "portier_connections_total 10") {
		t.Errorf("metrics: %v", &as)
	}
	decode("admin_response_refused", &as)
	if r := as.GetRefused(); r == nil || r.GetCode() != pb.ErrorCode_ERROR_RATE_LIMITED || r.GetRetryAfterMs() != 1500 {
		t.Errorf("admin refused: %v", &as)
	}
}

// frameBody encodes f without validation, so tests can build frames the
// decoder must refuse.
func frameBody(t *testing.T, f *pb.Frame) []byte {
	t.Helper()
	b, err := wire.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDecodeFrameValidationOrder: envelope_version, then kind, then
// payload_protocol, then payload_encoding; a frame breaking several rules
// reports the first. Only envelope_version is a version error: the other
// three are rules of v1 that a v1 peer broke.
func TestDecodeFrameValidationOrder(t *testing.T) {
	const (
		unsupported = pb.ErrorCode_ERROR_VERSION_UNSUPPORTED
		rejected    = pb.ErrorCode_ERROR_PEER_REJECTED
		ok          = pb.ErrorCode_ERROR_CODE_UNSPECIFIED
	)
	zstd := pb.PayloadEncoding_PAYLOAD_ENCODING_ZSTD
	for _, c := range []struct {
		name      string
		f         *pb.Frame
		wantCode  pb.ErrorCode
		wantField string
	}{
		{"all four wrong", &pb.Frame{EnvelopeVersion: 0, Kind: 9, PayloadProtocol: 0x1234, PayloadEncoding: zstd}, unsupported, "envelope_version"},
		{"envelope 2 and the rest wrong", &pb.Frame{EnvelopeVersion: 2, Kind: 9, PayloadProtocol: 0x1234, PayloadEncoding: zstd}, unsupported, "envelope_version"},
		{"envelope max", &pb.Frame{EnvelopeVersion: math.MaxUint32}, unsupported, "envelope_version"},
		{"kind, protocol and encoding wrong", &pb.Frame{EnvelopeVersion: 1, Kind: 4, PayloadProtocol: 0x1234, PayloadEncoding: zstd}, rejected, "kind"},
		{"negative kind", &pb.Frame{EnvelopeVersion: 1, Kind: -1}, rejected, "kind"},
		{"kind max int32", &pb.Frame{EnvelopeVersion: 1, Kind: math.MaxInt32}, rejected, "kind"},
		{"protocol and encoding wrong", &pb.Frame{EnvelopeVersion: 1, Kind: 1, PayloadProtocol: 0x1234, PayloadEncoding: zstd}, rejected, "payload_protocol"},
		{"protocol 0x0001", &pb.Frame{EnvelopeVersion: 1, PayloadProtocol: 0x0001}, rejected, "payload_protocol"},
		{"protocol 0x6fff", &pb.Frame{EnvelopeVersion: 1, PayloadProtocol: 0x6fff}, rejected, "payload_protocol"},
		{"protocol 0x7f00", &pb.Frame{EnvelopeVersion: 1, PayloadProtocol: 0x7f00}, rejected, "payload_protocol"},
		{"protocol 0xefff", &pb.Frame{EnvelopeVersion: 1, PayloadProtocol: 0xefff}, rejected, "payload_protocol"},
		{"protocol 0x10000", &pb.Frame{EnvelopeVersion: 1, PayloadProtocol: 0x10000}, rejected, "payload_protocol"},
		{"encoding ZSTD", &pb.Frame{EnvelopeVersion: 1, PayloadEncoding: zstd}, rejected, "payload_encoding"},
		{"encoding SNAPPY", &pb.Frame{EnvelopeVersion: 1, PayloadEncoding: pb.PayloadEncoding_PAYLOAD_ENCODING_SNAPPY}, rejected, "payload_encoding"},
		{"encoding LZ4", &pb.Frame{EnvelopeVersion: 1, PayloadEncoding: pb.PayloadEncoding_PAYLOAD_ENCODING_LZ4}, rejected, "payload_encoding"},
		{"encoding 99", &pb.Frame{EnvelopeVersion: 1, PayloadEncoding: 99}, rejected, "payload_encoding"},
		{"encoding -1", &pb.Frame{EnvelopeVersion: 1, PayloadEncoding: -1}, rejected, "payload_encoding"},
		{"REQUEST control", &pb.Frame{EnvelopeVersion: 1, PayloadProtocol: wire.ProtocolControl}, ok, ""},
		{"RESPONSE admin", &pb.Frame{EnvelopeVersion: 1, Kind: 1, PayloadProtocol: wire.ProtocolAdmin}, ok, ""},
		{"EVENT handoff", &pb.Frame{EnvelopeVersion: 1, Kind: 2, PayloadProtocol: wire.ProtocolHandoff}, ok, ""},
		{"CANCEL identity", &pb.Frame{EnvelopeVersion: 1, Kind: 3, PayloadProtocol: wire.ProtocolIdentity}, ok, ""},
		{"consumer 0x7000", &pb.Frame{EnvelopeVersion: 1, PayloadProtocol: 0x7000}, ok, ""},
		{"consumer 0x7eff", &pb.Frame{EnvelopeVersion: 1, PayloadProtocol: 0x7eff}, ok, ""},
		{"private 0xf000", &pb.Frame{EnvelopeVersion: 1, PayloadProtocol: 0xf000}, ok, ""},
		{"backend control", &pb.Frame{EnvelopeVersion: 1, PayloadProtocol: wire.ProtocolBackendControl}, ok, ""},
		{"private 0xffff", &pb.Frame{EnvelopeVersion: 1, PayloadProtocol: 0xffff}, ok, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := wire.DecodeFrame(frameBody(t, c.f))
			if c.wantCode == ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if !proto.Equal(f, c.f) {
					t.Errorf("decoded %v, want %v", f, c.f)
				}
				if err := wire.CheckEnvelope(f); err != nil {
					t.Errorf("CheckEnvelope: %v", err)
				}
				return
			}
			if f != nil {
				t.Errorf("frame %v returned with an error", f)
			}
			v := asViolation(t, err)
			if v.Code != c.wantCode || v.Field != c.wantField {
				t.Errorf("got %v on %q, want %v on %q", v.Code, v.Field, c.wantCode, c.wantField)
			}
			if !strings.Contains(v.Error(), c.wantCode.String()) || v.Reason == "" {
				t.Errorf("error text %q", v.Error())
			}
			if r := v.Refused(); r.GetCode() != c.wantCode || r.GetDetails()["field"] != c.wantField {
				t.Errorf("Refused() = %v", r)
			}
			if v := asViolation(t, wire.CheckEnvelope(c.f)); v.Code != c.wantCode || v.Field != c.wantField {
				t.Errorf("CheckEnvelope disagrees with DecodeFrame: %v on %q", v.Code, v.Field)
			}
		})
	}
	if err := wire.CheckEnvelope(nil); err == nil {
		t.Error("CheckEnvelope(nil) accepted")
	}
}

func TestDecodeFrameMalformed(t *testing.T) {
	for name, body := range map[string][]byte{
		"truncated varint":       {0x08, 0x81},
		"truncated length":       {0x08, 0x01, 0x22, 0x05, 0x01},
		"field number 0":         {0x00, 0x01},
		"invalid wire type":      {0x0f},
		"end group without open": {0x0c},
		"invalid UTF-8 string":   {0x08, 0x01, 0x42, 0x01, 0xff},
		"varint over 10 bytes":   {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := wire.DecodeFrame(body)
			v := asViolation(t, err)
			if v.Code != pb.ErrorCode_ERROR_PEER_REJECTED || v.Field != "" || !strings.Contains(v.Reason, "malformed frame") {
				t.Errorf("got %+v", v)
			}
			if r := v.Refused(); r.GetDetails() != nil {
				t.Errorf("Refused() for a field-less violation has details %v", r.GetDetails())
			}
		})
	}
}

// TestDecodeFrameWrongWireType: a known field number arriving with another
// wire type (payload as a varint) is kept as an unknown field, which the
// protocol ignores, rather than failing the frame.
func TestDecodeFrameWrongWireType(t *testing.T) {
	f, err := wire.DecodeFrame([]byte{0x08, 0x01, 0x20, 0x01})
	if err != nil || len(f.GetPayload()) != 0 || len(f.ProtoReflect().GetUnknown()) != 2 {
		t.Fatalf("DecodeFrame = %v, %v", f, err)
	}
}

// TestAbsentKindIsRequest: proto3 omits kind=REQUEST; a frame without the
// field, or with an explicit 0, is a REQUEST.
func TestAbsentKindIsRequest(t *testing.T) {
	for name, body := range map[string][]byte{
		"absent":     {0x08, 0x01},
		"explicit 0": {0x08, 0x01, 0x10, 0x00},
		"0 after 1":  {0x08, 0x01, 0x10, 0x01, 0x10, 0x00}, // last value wins
	} {
		f, err := wire.DecodeFrame(body)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if f.GetKind() != pb.FrameKind_FRAME_KIND_REQUEST {
			t.Errorf("%s: kind %v, want REQUEST", name, f.GetKind())
		}
	}
	f, _ := wire.NewRequest(wire.ProtocolControl, 0, &pb.Hello{})
	if b := frameBody(t, f); bytes.Contains(b, []byte{0x10}) {
		t.Errorf("REQUEST frame %x contains a kind tag", b)
	}
}

// TestUnknownFieldsIgnored appends fields of every wire type with unknown
// or reserved numbers to valid messages; decoding succeeds, the known fields
// are intact.
func TestUnknownFieldsIgnored(t *testing.T) {
	// Field 10 is reserved in Frame, HandoffOffer and HandoffAck (it is
	// peer_pid in Hello); the others are unknown everywhere.
	var reserved10, unknown []byte
	reserved10 = protowire.AppendTag(reserved10, 10, protowire.VarintType)
	reserved10 = protowire.AppendVarint(reserved10, 12345)
	unknown = protowire.AppendTag(unknown, 99, protowire.BytesType)
	unknown = protowire.AppendBytes(unknown, []byte("future field"))
	unknown = protowire.AppendTag(unknown, 100, protowire.Fixed32Type)
	unknown = protowire.AppendFixed32(unknown, 0xdeadbeef)
	unknown = protowire.AppendTag(unknown, 101, protowire.Fixed64Type)
	unknown = protowire.AppendFixed64(unknown, 1)
	unknown = protowire.AppendTag(unknown, 102, protowire.StartGroupType)
	unknown = protowire.AppendTag(unknown, 1, protowire.VarintType)
	unknown = protowire.AppendVarint(unknown, 7)
	unknown = protowire.AppendTag(unknown, 102, protowire.EndGroupType)
	unknown = protowire.AppendTag(unknown, 1<<29-1, protowire.VarintType) // largest field number
	unknown = protowire.AppendVarint(unknown, 1)

	hello := sampleNamed("hello")
	body := frameBody(t, hello.frame)
	f, err := wire.DecodeFrame(cat(body, reserved10, unknown))
	if err != nil {
		t.Fatal(err)
	}
	if f.GetRequestId() != 7 || !bytes.Equal(f.GetPayload(), hello.frame.GetPayload()) {
		t.Errorf("known fields lost: %v", f)
	}
	// Unknown fields before known ones are skipped just the same.
	if f, err := wire.DecodeFrame(cat(reserved10, unknown, body)); err != nil || f.GetRequestId() != 7 {
		t.Errorf("unknown fields first: %v, %v", f, err)
	}
	// Through ReadFrame, header included.
	enc := cat(header(uint32(len(body)+len(unknown))), body, unknown)
	if f, err := wire.ReadFrame(bytes.NewReader(enc), wire.MaxHelloBody); err != nil || f.GetRequestId() != 7 {
		t.Errorf("ReadFrame: %v, %v", f, err)
	}

	h, err := wire.DecodeHello(cat(hello.frame.GetPayload(), unknown))
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(stripUnknown(h), sampleHello()) {
		t.Errorf("Hello with unknown fields: %v", h)
	}
	if r := wire.ValidateHello(h, 4242); r != nil {
		t.Errorf("unknown fields made a valid Hello invalid: %v", r)
	}

	offer := sampleNamed("handoff_offer")
	o, err := wire.DecodeHandoffOffer(cat(offer.frame.GetPayload(), reserved10, unknown))
	if err != nil || !proto.Equal(stripUnknown(o), offer.msg) {
		t.Errorf("HandoffOffer: %v, %v", o, err)
	}
	ack := sampleNamed("handoff_ack")
	a, err := wire.DecodeHandoffAck(cat(ack.frame.GetPayload(), reserved10, unknown))
	if err != nil || !proto.Equal(stripUnknown(a), ack.msg) {
		t.Errorf("HandoffAck: %v, %v", a, err)
	}
}

// stripUnknown returns a copy of m without unknown fields.
func stripUnknown[M proto.Message](m M) M {
	c := proto.Clone(m).(M)
	c.ProtoReflect().SetUnknown(nil)
	return c
}

func TestNewRequest(t *testing.T) {
	f, err := wire.NewRequest(wire.ProtocolAdmin, 42, &pb.AdminRequest{Verb: &pb.AdminRequest_Status{Status: &pb.StatusRequest{}}})
	if err != nil {
		t.Fatal(err)
	}
	want := &pb.Frame{EnvelopeVersion: 1, Kind: pb.FrameKind_FRAME_KIND_REQUEST, PayloadProtocol: wire.ProtocolAdmin, Payload: []byte{0x0a, 0x00}, RequestId: 42}
	if !proto.Equal(f, want) {
		t.Errorf("got %v, want %v", f, want)
	}
	if _, err := wire.NewRequest(wire.ProtocolControl, 1, &pb.Hello{ServiceName: "\xff"}); err == nil {
		t.Error("payload with invalid UTF-8 encoded")
	}
}

// TestNewResponse: a response echoes the request's request_id and trace
// context, whatever else the request carried.
func TestNewResponse(t *testing.T) {
	req := &pb.Frame{
		EnvelopeVersion: 1,
		Kind:            pb.FrameKind_FRAME_KIND_REQUEST,
		PayloadProtocol: wire.ProtocolHandoff,
		Payload:         []byte("request payload"),
		RequestId:       0xfeedface12345678,
		DeadlineUnixMs:  1234,
		Traceparent:     sampleTraceparent,
		Tracestate:      sampleTracestate,
	}
	ack := &pb.HandoffAck{Token: tok, Accepted: true, CorrelationId: 9}
	f, err := wire.NewResponse(req, wire.ProtocolHandoff, ack)
	if err != nil {
		t.Fatal(err)
	}
	want := &pb.Frame{
		EnvelopeVersion: 1,
		Kind:            pb.FrameKind_FRAME_KIND_RESPONSE,
		PayloadProtocol: wire.ProtocolHandoff,
		Payload:         must(wire.Marshal(ack)),
		RequestId:       0xfeedface12345678,
		Traceparent:     sampleTraceparent,
		Tracestate:      sampleTracestate,
	}
	if !proto.Equal(f, want) {
		t.Errorf("got %v, want %v", f, want)
	}
	// The response protocol is the caller's, not the request's.
	f, _ = wire.NewResponse(req, wire.ProtocolControl, &pb.HelloReply{})
	if f.GetPayloadProtocol() != wire.ProtocolControl {
		t.Errorf("payload_protocol %#x", f.GetPayloadProtocol())
	}
	// A nil request (nothing to echo) gives a zero id and no trace context.
	f, err = wire.NewResponse(nil, wire.ProtocolControl, &pb.HelloReply{})
	if err != nil || f.GetRequestId() != 0 || f.GetTraceparent() != "" || f.GetTracestate() != "" {
		t.Errorf("NewResponse(nil) = %v, %v", f, err)
	}
	if _, err := wire.NewResponse(req, wire.ProtocolHandoff, &pb.HandoffAck{ErrorDetail: "\xff"}); err == nil {
		t.Error("payload with invalid UTF-8 encoded")
	}
}

// TestNewEvent: an event carries its cause's trace context (the
// handoff-ready event continues the trace of the offer).
func TestNewEvent(t *testing.T) {
	cause := &pb.Frame{EnvelopeVersion: 1, RequestId: 5, Traceparent: sampleTraceparent, Tracestate: sampleTracestate}
	ack := &pb.HandoffAck{Token: tok, Accepted: true, CorrelationId: 77}
	f, err := wire.NewEvent(wire.ProtocolHandoff, 77, ack, cause)
	if err != nil {
		t.Fatal(err)
	}
	want := &pb.Frame{
		EnvelopeVersion: 1,
		Kind:            pb.FrameKind_FRAME_KIND_EVENT,
		PayloadProtocol: wire.ProtocolHandoff,
		Payload:         must(wire.Marshal(ack)),
		RequestId:       77, // the event's own id, not the cause's
		Traceparent:     sampleTraceparent,
		Tracestate:      sampleTracestate,
	}
	if !proto.Equal(f, want) {
		t.Errorf("got %v, want %v", f, want)
	}
	f, err = wire.NewEvent(wire.ProtocolHandoff, 77, ack, nil)
	if err != nil || f.GetTraceparent() != "" || f.GetTracestate() != "" || f.GetKind() != pb.FrameKind_FRAME_KIND_EVENT {
		t.Errorf("NewEvent without cause = %v, %v", f, err)
	}
	if _, err := wire.NewEvent(wire.ProtocolHandoff, 1, &pb.HandoffAck{ErrorDetail: "\xff"}, cause); err == nil {
		t.Error("payload with invalid UTF-8 encoded")
	}
}

func TestNewRefused(t *testing.T) {
	for _, c := range []struct {
		retry time.Duration
		want  uint64
	}{
		{0, 0},
		{-time.Second, 0},
		{1, 1}, // 1ns rounds up to 1ms
		{time.Millisecond - 1, 1},
		{time.Millisecond, 1},
		{time.Millisecond + 1, 2},
		{1500 * time.Microsecond, 2},
		{250 * time.Millisecond, 250},
		{time.Minute, 60000},
		{math.MaxInt64, math.MaxInt64/uint64(time.Millisecond) + 1},
		{math.MaxInt64 - math.MaxInt64%time.Millisecond, math.MaxInt64 / uint64(time.Millisecond)},
	} {
		r := wire.NewRefused(pb.ErrorCode_ERROR_RATE_LIMITED, "slow down", c.retry, nil)
		if r.GetRetryAfterMs() != c.want {
			t.Errorf("retry %v: retry_after_ms %d, want %d", c.retry, r.GetRetryAfterMs(), c.want)
		}
	}
	details := map[string]string{"field": "service_name"}
	r := wire.NewRefused(pb.ErrorCode_ERROR_SERVICE_UNKNOWN, "no such service", 0, details)
	want := &pb.Refused{Reason: "no such service", DaemonMinProtocol: 1, DaemonMaxProtocol: 1, Code: pb.ErrorCode_ERROR_SERVICE_UNKNOWN, Details: map[string]string{"field": "service_name"}}
	if !proto.Equal(r, want) {
		t.Errorf("got %v, want %v", r, want)
	}
	// The details are copied: the caller may reuse its map.
	details["field"] = "changed"
	if r.GetDetails()["field"] != "service_name" {
		t.Error("NewRefused aliases the caller's details map")
	}
	if r := wire.NewRefused(pb.ErrorCode_ERROR_INTERNAL, "x", 0, nil); r.GetDetails() != nil {
		t.Errorf("nil details became %v", r.GetDetails())
	}
}

// TestNewRefusedInvalidUTF8: a refusal quoting bytes that are not UTF-8 (a
// backend's stderr) still encodes, with each bad sequence replaced, so the
// client gets the refusal rather than EOF.
func TestNewRefusedInvalidUTF8(t *testing.T) {
	bad := "exit status 3: \xff\xfe caf\xc3"
	r := wire.NewRefused(pb.ErrorCode_ERROR_BACKEND_SPAWN_FAILED, bad, 0, map[string]string{"stderr_tail": bad, "k\x80": "v"})
	if _, err := wire.Marshal(&pb.HelloReply{Result: &pb.HelloReply_Refused{Refused: r}}); err != nil {
		t.Fatalf("refusal with invalid UTF-8 does not encode: %v", err)
	}
	want := "exit status 3: \uFFFD caf\uFFFD"
	if r.GetReason() != want || r.GetDetails()["stderr_tail"] != want || r.GetDetails()["k\uFFFD"] != "v" {
		t.Errorf("refusal = %q %q, want %q in reason and details", r.GetReason(), r.GetDetails(), want)
	}
	if s := "valid: caf\u00e9"; wire.ValidUTF8(s) != s {
		t.Errorf("ValidUTF8 changed valid text %q", s)
	}
}

func TestViolation(t *testing.T) {
	v := &wire.Violation{Code: pb.ErrorCode_ERROR_PEER_REJECTED, Field: "token", Reason: "handoff token is 3 bytes"}
	if got := v.Error(); !strings.Contains(got, "ERROR_PEER_REJECTED") || !strings.Contains(got, "handoff token is 3 bytes") {
		t.Errorf("Error() = %q", got)
	}
	r := v.Refused()
	want := wire.NewRefused(pb.ErrorCode_ERROR_PEER_REJECTED, "handoff token is 3 bytes", 0, map[string]string{"field": "token"})
	if !proto.Equal(r, want) {
		t.Errorf("Refused() = %v, want %v", r, want)
	}
	var err error = v
	var got *wire.Violation
	if !errors.As(err, &got) || got != v {
		t.Error("errors.As does not find the Violation")
	}
}

func TestKnownPayloadProtocol(t *testing.T) {
	known := []uint32{0x0000, 0xad01, 0xb232, 0xd0ff, 0x7000, 0x7001, 0x7eff, 0xf000, 0xf001, 0xffff}
	unknown := []uint32{0x0001, 0x6fff, 0x7f00, 0xad00, 0xad02, 0xb231, 0xb233, 0xd0fe, 0xd100, 0xefff, 0x10000, 0x1f001, math.MaxUint32}
	for _, p := range known {
		if !wire.KnownPayloadProtocol(p) {
			t.Errorf("%#x should be known", p)
		}
	}
	for _, p := range unknown {
		if wire.KnownPayloadProtocol(p) {
			t.Errorf("%#x should be unknown", p)
		}
	}
	for _, p := range []uint32{wire.ProtocolControl, wire.ProtocolAdmin, wire.ProtocolIdentity, wire.ProtocolHandoff, wire.ProtocolBackendControl} {
		if !wire.KnownPayloadProtocol(p) {
			t.Errorf("registry constant %#x unknown", p)
		}
	}
	if wire.ProtocolBackendControl < 0xf000 {
		t.Errorf("backend control %#x is outside the private-use range", wire.ProtocolBackendControl)
	}
}

func TestDecodeHandoffOffer(t *testing.T) {
	valid := &pb.HandoffOffer{HandleValue: 0, Token: tok, ServiceName: "echo", CorrelationId: 1}
	for _, c := range []struct {
		name  string
		mod   func(o *pb.HandoffOffer)
		field string // "" for accepted
	}{
		{"valid", func(*pb.HandoffOffer) {}, ""},
		{"windows handle", func(o *pb.HandoffOffer) { o.HandleValue = 0x1a4 }, ""},
		{"largest correlation id", func(o *pb.HandoffOffer) { o.CorrelationId = math.MaxUint64 }, ""},
		{"no token", func(o *pb.HandoffOffer) { o.Token = nil }, "token"},
		{"15-byte token", func(o *pb.HandoffOffer) { o.Token = tok[:15] }, "token"},
		{"17-byte token", func(o *pb.HandoffOffer) { o.Token = append(bytes.Clone(tok), 0) }, "token"},
		{"empty service", func(o *pb.HandoffOffer) { o.ServiceName = "" }, "service_name"},
		{"uppercase service", func(o *pb.HandoffOffer) { o.ServiceName = "Echo" }, "service_name"},
		{"65-char service", func(o *pb.HandoffOffer) { o.ServiceName = strings.Repeat("a", 65) }, "service_name"},
		{"zero correlation id", func(o *pb.HandoffOffer) { o.CorrelationId = 0 }, "correlation_id"},
		{"token checked first", func(o *pb.HandoffOffer) { o.Token, o.ServiceName, o.CorrelationId = nil, "", 0 }, "token"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := proto.Clone(valid).(*pb.HandoffOffer)
			c.mod(o)
			got, err := wire.DecodeHandoffOffer(must(wire.Marshal(o)))
			if c.field == "" {
				if err != nil || !proto.Equal(got, o) {
					t.Fatalf("got %v, %v; want %v", got, err, o)
				}
				return
			}
			if got != nil {
				t.Errorf("offer %v returned with an error", got)
			}
			if v := asViolation(t, err); v.Code != pb.ErrorCode_ERROR_PEER_REJECTED || v.Field != c.field {
				t.Errorf("got %v on %q, want PEER_REJECTED on %q", v.Code, v.Field, c.field)
			}
		})
	}
	_, err := wire.DecodeHandoffOffer([]byte{0x12, 0x10, 0x01})
	if v := asViolation(t, err); v.Code != pb.ErrorCode_ERROR_PEER_REJECTED || !strings.Contains(v.Reason, "malformed HandoffOffer") {
		t.Errorf("malformed offer: %+v", v)
	}
}

func TestDecodeHandoffAckAndHello(t *testing.T) {
	// Acks are not validated here: the adopter compares the token itself.
	for _, a := range []*pb.HandoffAck{{}, {Token: tok, Accepted: true, CorrelationId: 1}, {ErrorDetail: "refused"}} {
		got, err := wire.DecodeHandoffAck(must(wire.Marshal(a)))
		if err != nil || !proto.Equal(got, a) {
			t.Errorf("DecodeHandoffAck(%v) = %v, %v", a, got, err)
		}
	}
	for name, dec := range map[string]func([]byte) error{
		"HandoffAck": func(b []byte) error { _, err := wire.DecodeHandoffAck(b); return err },
		"Hello":      func(b []byte) error { _, err := wire.DecodeHello(b); return err },
	} {
		for _, bad := range [][]byte{{0x0a, 0x05}, {0x1a, 0x01, 0xff}, {0x80}} {
			// Truncated length, invalid UTF-8 in field 3 (a string in
			// both), truncated tag.
			err := dec(bad)
			if err == nil {
				t.Errorf("%s accepted %x", name, bad)
				continue
			}
			if v := asViolation(t, err); v.Code != pb.ErrorCode_ERROR_PEER_REJECTED || !strings.Contains(v.Reason, "malformed "+name) {
				t.Errorf("%s(%x): %+v", name, bad, v)
			}
		}
	}
	if h, err := wire.DecodeHello(nil); err != nil || !proto.Equal(h, &pb.Hello{}) {
		t.Errorf("empty Hello payload: %v, %v", h, err)
	}
}
