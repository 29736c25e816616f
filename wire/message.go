package wire

import (
	"crypto/subtle"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	pb "github.com/portier/portier/wire/portierv1"
	"google.golang.org/protobuf/proto"
)

// Violation is a peer input that breaks a protocol rule. It carries the
// stable ErrorCode and a reason a person can act on, and converts to a
// ready-to-send Refused.
type Violation struct {
	Code   pb.ErrorCode
	Field  string // the offending field, "" when not about one field
	Reason string
}

func (v *Violation) Error() string {
	return fmt.Sprintf("wire: %s: %s", v.Code, v.Reason)
}

// Refused returns the refusal to send for this violation.
func (v *Violation) Refused() *pb.Refused {
	var details map[string]string
	if v.Field != "" {
		details = map[string]string{"field": v.Field}
	}
	return NewRefused(v.Code, v.Reason, 0, details)
}

// NewRefused builds a Refused with the broker's protocol range filled in.
// retryAfter is rounded up to whole milliseconds; 0 means "do not retry".
//
// Protobuf strings must be valid UTF-8, and a Refused that does not encode
// never reaches its client (which then sees EOF instead of the refusal).
// Reasons and details often quote what the broker did not write itself (a
// backend's stderr, a file name), so invalid sequences are replaced with
// U+FFFD here, once for every refusal.
func NewRefused(code pb.ErrorCode, reason string, retryAfter time.Duration, details map[string]string) *pb.Refused {
	r := &pb.Refused{
		Reason:            ValidUTF8(reason),
		DaemonMinProtocol: ProtocolVersion,
		DaemonMaxProtocol: ProtocolVersion,
		Code:              code,
	}
	if details != nil {
		r.Details = make(map[string]string, len(details))
		for k, v := range details {
			r.Details[ValidUTF8(k)] = ValidUTF8(v)
		}
	}
	if retryAfter > 0 {
		// Divide, then round up: adding 999999ns first would overflow
		// near the largest Duration and wrap to a huge retry.
		ms := retryAfter / time.Millisecond
		if retryAfter%time.Millisecond != 0 {
			ms++
		}
		r.RetryAfterMs = uint64(ms)
	}
	return r
}

// ValidUTF8 returns s with every invalid UTF-8 sequence replaced by U+FFFD,
// so it can travel in a protobuf string field; valid input is returned as
// is, without copying.
func ValidUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// DecodeFrame unmarshals a frame body and validates the envelope in the
// protocol's order: envelope_version, kind, payload_protocol,
// payload_encoding. An absent kind decodes as REQUEST. Unknown fields are
// ignored. Errors are *Violation (or a protobuf decode error wrapped in one).
func DecodeFrame(body []byte) (*pb.Frame, error) {
	f, err := UnmarshalFrame(body)
	if err != nil {
		return nil, err
	}
	if err := CheckEnvelope(f); err != nil {
		return nil, err
	}
	return f, nil
}

// UnmarshalFrame unmarshals a frame body without checking its envelope, for
// a receiver that answers an envelope violation itself and must echo the
// frame's request_id and trace context in that answer: it calls
// CheckEnvelope next. The error is a PEER_REJECTED *Violation.
func UnmarshalFrame(body []byte) (*pb.Frame, error) {
	f := new(pb.Frame)
	if err := proto.Unmarshal(body, f); err != nil {
		return nil, &Violation{Code: pb.ErrorCode_ERROR_PEER_REJECTED, Reason: "malformed frame: " + err.Error()}
	}
	return f, nil
}

// CheckEnvelope validates the envelope fields of a decoded frame. Only an
// envelope_version other than 1 is VERSION_UNSUPPORTED (with the framing
// byte, it is what a peer of another protocol generation differs in); a
// bad kind, an unregistered payload_protocol or a compressed payload is
// PEER_REJECTED: the peer speaks v1 and broke one of its rules.
func CheckEnvelope(f *pb.Frame) error {
	if f.GetEnvelopeVersion() != EnvelopeVersion {
		return &Violation{Code: pb.ErrorCode_ERROR_VERSION_UNSUPPORTED, Field: "envelope_version",
			Reason: fmt.Sprintf("envelope_version %d is not supported; this broker speaks envelope version %d", f.GetEnvelopeVersion(), EnvelopeVersion)}
	}
	if k := f.GetKind(); k < pb.FrameKind_FRAME_KIND_REQUEST || k > pb.FrameKind_FRAME_KIND_CANCEL {
		return &Violation{Code: pb.ErrorCode_ERROR_PEER_REJECTED, Field: "kind",
			Reason: fmt.Sprintf("frame kind %d is not one of REQUEST, RESPONSE, EVENT, CANCEL", int32(k))}
	}
	if !KnownPayloadProtocol(f.GetPayloadProtocol()) {
		return &Violation{Code: pb.ErrorCode_ERROR_PEER_REJECTED, Field: "payload_protocol",
			Reason: fmt.Sprintf("payload_protocol 0x%04x is not in the registry", f.GetPayloadProtocol())}
	}
	if e := f.GetPayloadEncoding(); e != pb.PayloadEncoding_PAYLOAD_ENCODING_NONE {
		return &Violation{Code: pb.ErrorCode_ERROR_PEER_REJECTED, Field: "payload_encoding",
			Reason: fmt.Sprintf("payload_encoding %d is not supported; send uncompressed payloads (NONE)", int32(e))}
	}
	return nil
}

// KnownPayloadProtocol reports whether p is in the payload-protocol registry.
func KnownPayloadProtocol(p uint32) bool {
	switch {
	case p == ProtocolControl, p == ProtocolAdmin, p == ProtocolIdentity, p == ProtocolHandoff:
		return true
	case p >= 0x7000 && p <= 0x7EFF, p >= 0xF000 && p <= 0xFFFF:
		return true
	}
	return false
}

func newFrame(kind pb.FrameKind, protocol uint32, requestID uint64, msg proto.Message) (*pb.Frame, error) {
	payload, err := Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("wire: encode payload: %w", err)
	}
	return &pb.Frame{
		EnvelopeVersion: EnvelopeVersion,
		Kind:            kind,
		PayloadProtocol: protocol,
		Payload:         payload,
		RequestId:       requestID,
	}, nil
}

// NewRequest builds a REQUEST frame carrying msg.
func NewRequest(protocol uint32, requestID uint64, msg proto.Message) (*pb.Frame, error) {
	return newFrame(pb.FrameKind_FRAME_KIND_REQUEST, protocol, requestID, msg)
}

// NewResponse builds the RESPONSE to req: it echoes req's request_id and its
// trace context as TraceContext passes it on (an invalid traceparent is
// dropped, never echoed).
func NewResponse(req *pb.Frame, protocol uint32, msg proto.Message) (*pb.Frame, error) {
	f, err := newFrame(pb.FrameKind_FRAME_KIND_RESPONSE, protocol, req.GetRequestId(), msg)
	if err != nil {
		return nil, err
	}
	f.Traceparent, f.Tracestate = TraceContext(req)
	return f, nil
}

// NewEvent builds an EVENT frame. When cause is non-nil its trace context is
// carried over as TraceContext passes it on.
func NewEvent(protocol uint32, requestID uint64, msg proto.Message, cause *pb.Frame) (*pb.Frame, error) {
	f, err := newFrame(pb.FrameKind_FRAME_KIND_EVENT, protocol, requestID, msg)
	if err != nil {
		return nil, err
	}
	f.Traceparent, f.Tracestate = TraceContext(cause)
	return f, nil
}

// DecodeHello unmarshals a Hello payload. Validation is ValidateHello's job.
func DecodeHello(payload []byte) (*pb.Hello, error) {
	h := new(pb.Hello)
	if err := proto.Unmarshal(payload, h); err != nil {
		return nil, &Violation{Code: pb.ErrorCode_ERROR_PEER_REJECTED, Reason: "malformed Hello: " + err.Error()}
	}
	return h, nil
}

// TokenLen is the length of a handoff token.
const TokenLen = 16

// DecodeHandoffOffer unmarshals and validates a HandoffOffer payload: the
// token is exactly 16 bytes, the service name is well formed and the
// correlation id is set.
func DecodeHandoffOffer(payload []byte) (*pb.HandoffOffer, error) {
	o := new(pb.HandoffOffer)
	if err := proto.Unmarshal(payload, o); err != nil {
		return nil, &Violation{Code: pb.ErrorCode_ERROR_PEER_REJECTED, Reason: "malformed HandoffOffer: " + err.Error()}
	}
	return checkHandoffOffer(o)
}

func checkHandoffOffer(o *pb.HandoffOffer) (*pb.HandoffOffer, error) {
	if len(o.GetToken()) != TokenLen {
		return nil, &Violation{Code: pb.ErrorCode_ERROR_PEER_REJECTED, Field: "token",
			Reason: fmt.Sprintf("handoff token is %d bytes; it must be exactly %d", len(o.GetToken()), TokenLen)}
	}
	if !ValidServiceName(o.GetServiceName()) {
		return nil, &Violation{Code: pb.ErrorCode_ERROR_PEER_REJECTED, Field: "service_name",
			Reason: "offer service_name must match [a-z0-9-]{1,64}"}
	}
	if o.GetCorrelationId() == 0 {
		return nil, &Violation{Code: pb.ErrorCode_ERROR_PEER_REJECTED, Field: "correlation_id",
			Reason: "offer correlation_id must be the non-zero connection id"}
	}
	return o, nil
}

// DecodeZeroRTTOffer unmarshals and validates a 0-RTT offer (payload
// protocol 0xF002): its offer as DecodeHandoffOffer does, and its
// hello_reply as exactly one frame of at most MaxHelloBody bytes whose body
// is a control RESPONSE carrying a Negotiated that announces this handoff:
// CAP_HANDLE_PASSING, the offer's token and its correlation id as
// connection_id. So a backend writes nothing a client could take for
// another connection's reply. Errors are *Violation.
func DecodeZeroRTTOffer(payload []byte) (*pb.ZeroRttOffer, error) {
	z := new(pb.ZeroRttOffer)
	if err := proto.Unmarshal(payload, z); err != nil {
		return nil, &Violation{Code: pb.ErrorCode_ERROR_PEER_REJECTED, Reason: "malformed ZeroRttOffer: " + err.Error()}
	}
	if z.GetOffer() == nil {
		return nil, rejected("offer", "0-RTT offer carries no HandoffOffer")
	}
	o, err := checkHandoffOffer(z.GetOffer())
	if err != nil {
		return nil, err
	}
	neg, err := replyNegotiated(z.GetHelloReply())
	if err != nil {
		return nil, err
	}
	switch {
	case neg.GetServerCapabilities()&CapHandlePassing == 0:
		return nil, rejected("hello_reply", "the 0-RTT offer's Negotiated does not announce a handoff")
	case neg.GetConnectionId() != o.GetCorrelationId():
		return nil, rejected("hello_reply", "the 0-RTT offer's Negotiated is for connection %d, the offer for %d",
			neg.GetConnectionId(), o.GetCorrelationId())
	case subtle.ConstantTimeCompare(neg.GetHandlePassedToken(), o.GetToken()) != 1:
		return nil, rejected("hello_reply", "the 0-RTT offer's Negotiated carries another token than the offer")
	}
	return z, nil
}

// replyNegotiated checks that b is one complete HelloReply frame carrying
// a Negotiated, and returns it.
func replyNegotiated(b []byte) (*pb.Negotiated, error) {
	if len(b) < HeaderLen {
		return nil, rejected("hello_reply", "hello_reply is %d bytes, shorter than a frame header", len(b))
	}
	n, err := ParseHeader(b[:HeaderLen], MaxHelloBody)
	if err != nil {
		return nil, rejected("hello_reply", "hello_reply: %v", err)
	}
	if n != len(b)-HeaderLen {
		return nil, rejected("hello_reply", "hello_reply's header announces %d body bytes, it has %d", n, len(b)-HeaderLen)
	}
	f, err := DecodeFrame(b[HeaderLen:])
	if err != nil {
		return nil, rejected("hello_reply", "hello_reply: %v", err)
	}
	if f.GetKind() != pb.FrameKind_FRAME_KIND_RESPONSE || f.GetPayloadProtocol() != ProtocolControl {
		return nil, rejected("hello_reply", "hello_reply is a %s frame of payload protocol 0x%04x, not a control RESPONSE",
			f.GetKind(), f.GetPayloadProtocol())
	}
	r, err := DecodeHelloReply(f.GetPayload())
	if err != nil {
		return nil, err
	}
	neg := r.GetNegotiated()
	if neg == nil {
		return nil, rejected("hello_reply", "hello_reply is not a Negotiated")
	}
	return neg, nil
}

// OfferHandleValue returns the handle_value of an offer of either payload
// protocol (a HandoffOffer, or the offer in a ZeroRttOffer) without
// validating anything else, 0 when there is none or the payload does not
// decode. A Windows backend closes that handle whatever else is wrong with
// the offer: it is in its handle table from the moment the offer exists.
func OfferHandleValue(protocol uint32, payload []byte) uint64 {
	switch protocol {
	case ProtocolHandoff:
		o := new(pb.HandoffOffer)
		if proto.Unmarshal(payload, o) == nil {
			return o.GetHandleValue()
		}
	case ProtocolZeroRTTOffer:
		z := new(pb.ZeroRttOffer)
		if proto.Unmarshal(payload, z) == nil {
			return z.GetOffer().GetHandleValue()
		}
	}
	return 0
}

// DecodeHandoffAck unmarshals a HandoffAck payload (an ACK on the control
// connection or the ready event on a handed-off connection).
func DecodeHandoffAck(payload []byte) (*pb.HandoffAck, error) {
	a := new(pb.HandoffAck)
	if err := proto.Unmarshal(payload, a); err != nil {
		return nil, &Violation{Code: pb.ErrorCode_ERROR_PEER_REJECTED, Reason: "malformed HandoffAck: " + err.Error()}
	}
	return a, nil
}
