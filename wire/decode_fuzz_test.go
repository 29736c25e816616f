package wire_test

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// checkDecoded is what every decoder promises: a refusal is a PEER_REJECTED
// *Violation with no message; an accepted message re-encodes to bytes the
// decoder accepts again, decoding equal.
func checkDecoded[M proto.Message](t *testing.T, decode func([]byte) (M, error), m M, err error) bool {
	t.Helper()
	if err != nil {
		if proto.Message(m) != nil && m.ProtoReflect().IsValid() {
			t.Fatalf("message %v returned with %v", m, err)
		}
		checkRefusal(t, asViolation(t, err).Refused(), pb.ErrorCode_ERROR_PEER_REJECTED)
		return false
	}
	enc, err := wire.Marshal(m)
	if err != nil {
		t.Fatalf("accepted message cannot be re-encoded: %v", err)
	}
	back, err := decode(enc)
	if err != nil || !proto.Equal(m, back) {
		t.Fatalf("re-encoded message: %v, %v; want %v", back, err, m)
	}
	return true
}

// FuzzDecodeBackendControl: an accepted control message carries exactly one
// message, and an accepted Register has fields a broker can check.
func FuzzDecodeBackendControl(f *testing.F) {
	f.Fuzz(func(t *testing.T, payload []byte) {
		m, err := wire.DecodeBackendControl(payload)
		if !checkDecoded(t, wire.DecodeBackendControl, m, err) {
			return
		}
		if m.GetMsg() == nil {
			t.Fatalf("accepted a control message without a message: %v", m)
		}
		if r := m.GetRegister(); r != nil {
			if !wire.ValidServiceName(r.GetServiceName()) || !wire.ValidVersion(r.GetVersion()) ||
				r.GetEndpoint() == "" || len(r.GetEndpoint()) > wire.MaxEndpoint ||
				len(r.GetSpawnSecret()) == 0 || len(r.GetSpawnSecret()) > wire.MaxSpawnSecret {
				t.Fatalf("accepted an invalid Register: %v", r)
			}
		}
	})
}

// FuzzDecodeAdminRequest: an accepted admin request names a known verb,
// and a verb about a service a well-formed service (and version).
func FuzzDecodeAdminRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, payload []byte) {
		m, err := wire.DecodeAdminRequest(payload)
		if !checkDecoded(t, wire.DecodeAdminRequest, m, err) {
			return
		}
		switch {
		case m.GetStatus() != nil, m.GetMetrics() != nil:
		case m.GetStop() != nil:
			if !wire.ValidServiceName(m.GetStop().GetServiceName()) {
				t.Fatalf("accepted stop of service %q", m.GetStop().GetServiceName())
			}
		case m.GetRestart() != nil:
			if !wire.ValidServiceName(m.GetRestart().GetServiceName()) {
				t.Fatalf("accepted restart of service %q", m.GetRestart().GetServiceName())
			}
		case m.GetLogs() != nil:
			l := m.GetLogs()
			if !wire.ValidServiceName(l.GetServiceName()) || l.GetVersion() != "" && !wire.ValidVersion(l.GetVersion()) {
				t.Fatalf("accepted logs of %q version %q", l.GetServiceName(), l.GetVersion())
			}
		default:
			t.Fatalf("accepted an admin request without a known verb: %v", m)
		}
	})
}

// FuzzDecodeAdminResponse: an accepted admin response carries a result.
func FuzzDecodeAdminResponse(f *testing.F) {
	f.Fuzz(func(t *testing.T, payload []byte) {
		m, err := wire.DecodeAdminResponse(payload)
		if checkDecoded(t, wire.DecodeAdminResponse, m, err) && m.GetResult() == nil {
			t.Fatalf("accepted an admin response without a result: %v", m)
		}
	})
}

// FuzzDecodeHelloReply: an accepted HelloReply carries Negotiated or
// Refused.
func FuzzDecodeHelloReply(f *testing.F) {
	f.Fuzz(func(t *testing.T, payload []byte) {
		m, err := wire.DecodeHelloReply(payload)
		if checkDecoded(t, wire.DecodeHelloReply, m, err) && m.GetNegotiated() == nil && m.GetRefused() == nil {
			t.Fatalf("accepted a HelloReply without a result: %v", m)
		}
	})
}

// FuzzDecodeZeroRTTOffer: an accepted 0-RTT offer carries a valid offer
// and, as its hello_reply, exactly one control RESPONSE frame within the
// Hello cap whose Negotiated announces that very handoff; OfferHandleValue
// finds its handle value (and never panics on any payload).
func FuzzDecodeZeroRTTOffer(f *testing.F) {
	f.Fuzz(func(t *testing.T, payload []byte) {
		v := wire.OfferHandleValue(wire.ProtocolZeroRTTOffer, payload) // never panics, whatever the payload
		m, err := wire.DecodeZeroRTTOffer(payload)
		if !checkDecoded(t, wire.DecodeZeroRTTOffer, m, err) {
			return
		}
		o := m.GetOffer()
		if v != o.GetHandleValue() {
			t.Fatalf("OfferHandleValue = %#x, the offer names %#x", v, o.GetHandleValue())
		}
		if len(o.GetToken()) != wire.TokenLen || !wire.ValidServiceName(o.GetServiceName()) || o.GetCorrelationId() == 0 {
			t.Fatalf("accepted an invalid offer: %v", o)
		}
		b := m.GetHelloReply()
		n, err := wire.ParseHeader(b[:wire.HeaderLen], wire.MaxHelloBody)
		if err != nil || n != len(b)-wire.HeaderLen {
			t.Fatalf("accepted a hello_reply that is not one frame: %x (%v)", b, err)
		}
		fr, err := wire.DecodeFrame(b[wire.HeaderLen:])
		if err != nil || fr.GetKind() != pb.FrameKind_FRAME_KIND_RESPONSE || fr.GetPayloadProtocol() != wire.ProtocolControl {
			t.Fatalf("accepted a hello_reply that is not a control RESPONSE: %v (%v)", fr, err)
		}
		r, err := wire.DecodeHelloReply(fr.GetPayload())
		neg := r.GetNegotiated()
		if err != nil || neg == nil || neg.GetConnectionId() != o.GetCorrelationId() ||
			!bytes.Equal(neg.GetHandlePassedToken(), o.GetToken()) || neg.GetServerCapabilities()&wire.CapHandlePassing == 0 {
			t.Fatalf("accepted a hello_reply that does not announce this handoff: %v (%v)", r, err)
		}
	})
}

// decodeFuzzSeeds are the committed seeds of the targets above: every
// sample of their message, and one input per rule.
func decodeFuzzSeeds() []fuzzSeed {
	var seeds []fuzzSeed
	add := func(target, name string, payload []byte) {
		seeds = append(seeds, fuzzSeed{target, "seed-" + name, []any{payload}})
	}
	for _, s := range samples() {
		var target string
		switch s.msg.(type) {
		case *pb.BackendControl:
			target = "FuzzDecodeBackendControl"
		case *pb.AdminRequest:
			target = "FuzzDecodeAdminRequest"
		case *pb.AdminResponse:
			target = "FuzzDecodeAdminResponse"
		case *pb.HelloReply:
			target = "FuzzDecodeHelloReply"
		case *pb.ZeroRttOffer:
			target = "FuzzDecodeZeroRTTOffer"
		default:
			continue
		}
		add(target, s.name, s.frame.GetPayload())
	}
	register := func(mod func(r *pb.Register)) []byte {
		m := proto.Clone(sampleNamed("backend_register").msg).(*pb.BackendControl)
		mod(m.GetRegister())
		return must(wire.Marshal(m))
	}
	add("FuzzDecodeBackendControl", "empty", []byte{})
	add("FuzzDecodeBackendControl", "malformed", sampleNamed("backend_register").frame.GetPayload()[:7])
	add("FuzzDecodeBackendControl", "bad-service", register(func(r *pb.Register) { r.ServiceName = "Echo" }))
	add("FuzzDecodeBackendControl", "bad-version", register(func(r *pb.Register) { r.Version = "1.2" }))
	add("FuzzDecodeBackendControl", "no-endpoint", register(func(r *pb.Register) { r.Endpoint = "" }))
	add("FuzzDecodeBackendControl", "long-endpoint", register(func(r *pb.Register) { r.Endpoint = strings.Repeat("e", wire.MaxEndpoint+1) }))
	add("FuzzDecodeBackendControl", "no-secret", register(func(r *pb.Register) { r.SpawnSecret = nil }))
	add("FuzzDecodeBackendControl", "long-secret", register(func(r *pb.Register) { r.SpawnSecret = make([]byte, wire.MaxSpawnSecret+1) }))
	add("FuzzDecodeAdminRequest", "empty", []byte{})
	add("FuzzDecodeAdminRequest", "unknown-verb", []byte{0x1a, 0x00})
	add("FuzzDecodeAdminRequest", "malformed", []byte{0x0a, 0x05})
	adminReq := func(m *pb.AdminRequest) []byte { return must(wire.Marshal(m)) }
	add("FuzzDecodeAdminRequest", "stop-bad-service", adminReq(&pb.AdminRequest{Verb: &pb.AdminRequest_Stop{Stop: &pb.StopRequest{ServiceName: "Echo"}}}))
	add("FuzzDecodeAdminRequest", "stop-no-service", adminReq(&pb.AdminRequest{Verb: &pb.AdminRequest_Stop{Stop: &pb.StopRequest{}}}))
	add("FuzzDecodeAdminRequest", "restart-bad-service", adminReq(&pb.AdminRequest{Verb: &pb.AdminRequest_Restart{Restart: &pb.RestartRequest{ServiceName: "../echo"}}}))
	add("FuzzDecodeAdminRequest", "logs-bad-service", adminReq(&pb.AdminRequest{Verb: &pb.AdminRequest_Logs{Logs: &pb.LogsRequest{ServiceName: strings.Repeat("a", 65)}}}))
	add("FuzzDecodeAdminRequest", "logs-bad-version", adminReq(&pb.AdminRequest{Verb: &pb.AdminRequest_Logs{Logs: &pb.LogsRequest{ServiceName: "echo", Version: "1.2"}}}))
	add("FuzzDecodeAdminRequest", "logs-no-version", adminReq(&pb.AdminRequest{Verb: &pb.AdminRequest_Logs{Logs: &pb.LogsRequest{ServiceName: "echo"}}}))
	add("FuzzDecodeAdminResponse", "empty", []byte{})
	add("FuzzDecodeAdminResponse", "malformed", sampleNamed("admin_response_status").frame.GetPayload()[:9])
	add("FuzzDecodeHelloReply", "empty", []byte{})
	add("FuzzDecodeHelloReply", "malformed", sampleNamed("hello_reply_negotiated").frame.GetPayload()[:11])
	add("FuzzDecodeHelloReply", "invalid-utf8", []byte{0x12, 0x03, 0x0a, 0x01, 0xff})
	zeroRTT := func(mod func(z *pb.ZeroRttOffer, neg *pb.Negotiated, reply *pb.Frame)) []byte {
		z := proto.Clone(sampleNamed("handoff_offer_0rtt").msg).(*pb.ZeroRttOffer)
		reply := proto.Clone(sampleNamed("hello_reply_negotiated").frame).(*pb.Frame)
		hr := proto.Clone(sampleNamed("hello_reply_negotiated").msg).(*pb.HelloReply)
		mod(z, hr.GetNegotiated(), reply)
		if z.HelloReply != nil {
			reply.Payload = must(wire.Marshal(hr))
			z.HelloReply = must(wire.EncodeFrame(reply))
		}
		return must(wire.Marshal(z))
	}
	add("FuzzDecodeZeroRTTOffer", "empty", []byte{})
	add("FuzzDecodeZeroRTTOffer", "malformed", sampleNamed("handoff_offer_0rtt").frame.GetPayload()[:9])
	add("FuzzDecodeZeroRTTOffer", "no-offer", zeroRTT(func(z *pb.ZeroRttOffer, _ *pb.Negotiated, _ *pb.Frame) { z.Offer = nil }))
	add("FuzzDecodeZeroRTTOffer", "short-token", zeroRTT(func(z *pb.ZeroRttOffer, _ *pb.Negotiated, _ *pb.Frame) { z.Offer.Token = tok[:15] }))
	add("FuzzDecodeZeroRTTOffer", "no-reply", zeroRTT(func(z *pb.ZeroRttOffer, _ *pb.Negotiated, _ *pb.Frame) { z.HelloReply = nil }))
	add("FuzzDecodeZeroRTTOffer", "reply-not-response", zeroRTT(func(_ *pb.ZeroRttOffer, _ *pb.Negotiated, f *pb.Frame) { f.Kind = pb.FrameKind_FRAME_KIND_EVENT }))
	add("FuzzDecodeZeroRTTOffer", "reply-other-protocol", zeroRTT(func(_ *pb.ZeroRttOffer, _ *pb.Negotiated, f *pb.Frame) { f.PayloadProtocol = wire.ProtocolHandoff }))
	add("FuzzDecodeZeroRTTOffer", "reply-no-handoff", zeroRTT(func(_ *pb.ZeroRttOffer, n *pb.Negotiated, _ *pb.Frame) { n.ServerCapabilities = 0 }))
	add("FuzzDecodeZeroRTTOffer", "reply-other-connection", zeroRTT(func(_ *pb.ZeroRttOffer, n *pb.Negotiated, _ *pb.Frame) { n.ConnectionId = 2 }))
	add("FuzzDecodeZeroRTTOffer", "reply-other-token", zeroRTT(func(_ *pb.ZeroRttOffer, n *pb.Negotiated, _ *pb.Frame) {
		n.HandlePassedToken = []byte("tok-0123456789ac")
	}))
	refusedReply := must(wire.EncodeFrame(sampleNamed("hello_reply_refused").frame))
	add("FuzzDecodeZeroRTTOffer", "reply-refused", must(wire.Marshal(&pb.ZeroRttOffer{
		Offer: sampleNamed("handoff_offer").msg.(*pb.HandoffOffer), HelloReply: refusedReply})))
	negReply := must(wire.EncodeFrame(sampleNamed("hello_reply_negotiated").frame))
	add("FuzzDecodeZeroRTTOffer", "reply-trailing-bytes", must(wire.Marshal(&pb.ZeroRttOffer{
		Offer: sampleNamed("handoff_offer").msg.(*pb.HandoffOffer), HelloReply: cat(negReply, []byte{0x01})})))
	add("FuzzDecodeZeroRTTOffer", "reply-truncated", must(wire.Marshal(&pb.ZeroRttOffer{
		Offer: sampleNamed("handoff_offer").msg.(*pb.HandoffOffer), HelloReply: negReply[:len(negReply)-1]})))
	add("FuzzDecodeZeroRTTOffer", "reply-over-cap", must(wire.Marshal(&pb.ZeroRttOffer{
		Offer: sampleNamed("handoff_offer").msg.(*pb.HandoffOffer), HelloReply: cat(header(wire.MaxHelloBody+1), make([]byte, wire.MaxHelloBody+1))})))
	return seeds
}

// TestDecodeRules: each committed rule seed is refused naming its field,
// and each sample is accepted.
func TestDecodeRules(t *testing.T) {
	decoders := map[string]func([]byte) error{
		"FuzzDecodeBackendControl": func(b []byte) error { _, err := wire.DecodeBackendControl(b); return err },
		"FuzzDecodeAdminRequest":   func(b []byte) error { _, err := wire.DecodeAdminRequest(b); return err },
		"FuzzDecodeAdminResponse":  func(b []byte) error { _, err := wire.DecodeAdminResponse(b); return err },
		"FuzzDecodeHelloReply":     func(b []byte) error { _, err := wire.DecodeHelloReply(b); return err },
		"FuzzDecodeZeroRTTOffer":   func(b []byte) error { _, err := wire.DecodeZeroRTTOffer(b); return err },
	}
	fields := map[string]string{
		"bad-service": "service_name", "bad-version": "version", "no-endpoint": "endpoint", "long-endpoint": "endpoint",
		"no-secret": "spawn_secret", "long-secret": "spawn_secret",
		"stop-bad-service": "service_name", "stop-no-service": "service_name", "restart-bad-service": "service_name",
		"logs-bad-service": "service_name", "logs-bad-version": "version",
		"no-offer": "offer", "short-token": "token", "no-reply": "hello_reply", "reply-not-response": "hello_reply",
		"reply-other-protocol": "hello_reply", "reply-no-handoff": "hello_reply", "reply-other-connection": "hello_reply",
		"reply-other-token": "hello_reply", "reply-refused": "hello_reply", "reply-trailing-bytes": "hello_reply",
		"reply-truncated": "hello_reply", "reply-over-cap": "hello_reply",
	}
	accepted := map[string]bool{"logs-no-version": true}
	for _, s := range decodeFuzzSeeds() {
		t.Run(s.target+"/"+s.name, func(t *testing.T) {
			rule := strings.TrimPrefix(s.name, "seed-")
			err := decoders[s.target](s.args[0].([]byte))
			if sampleExists(rule) || accepted[rule] {
				if err != nil {
					t.Fatalf("sample refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if want, ok := fields[rule]; ok && asViolation(t, err).Field != want {
				t.Fatalf("%v names field %q, want %q", err, asViolation(t, err).Field, want)
			}
		})
	}
}

func sampleExists(name string) bool {
	for _, s := range samples() {
		if s.name == name {
			return true
		}
	}
	return false
}
