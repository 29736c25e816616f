package wire_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"runtime/metrics"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// update rewrites the golden files and the generated fuzz seeds. Run it once
// after an intended change of a sample value, then review the diff:
//
//	go test ./wire -run 'TestGolden|TestFuzzSeedCorpus' -update
var update = flag.Bool("update", false, "rewrite testdata/golden/*.hex and the generated seeds under testdata/fuzz")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// must unwraps a constructor result; a failure while building a fixed
// sample value is a bug in the package, so it aborts loudly.
func must[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("building a sample value: %v", err))
	}
	return v
}

// cat concatenates byte slices; hand-built expected encodings read as a list
// of fields with it.
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// header is the 5-byte frame header announcing n body bytes.
func header(n uint32) []byte {
	return []byte{wire.FramingVersion, byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)}
}

// heapAllocBytes is the cumulative number of bytes the Go heap has handed
// out. Large objects (the only ones a frame body of interest can be) are
// counted at allocation time, without stopping the world.
func heapAllocBytes() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// asViolation returns err as a *wire.Violation or fails the test.
func asViolation(t testing.TB, err error) *wire.Violation {
	t.Helper()
	var v *wire.Violation
	if !errors.As(err, &v) {
		t.Fatalf("error %v (%T) is not a *wire.Violation", err, err)
	}
	return v
}

// tok is the fixed 16-byte handoff token of the samples (ASCII so it reads
// in the golden hex).
var tok = []byte("tok-0123456789ab")

const (
	sampleTraceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	sampleTracestate  = "rojo=00f067aa0ba902b7"
)

// sampleHello sets every Hello field a valid client may set (connection_id
// must stay 0). TestGoldenHandVerified spells out its encoding byte by byte.
func sampleHello() *pb.Hello {
	return &pb.Hello{
		ClientMinProtocol:    1,
		ClientMaxProtocol:    1,
		ServiceName:          "echo",
		WantedVersion:        "1.2.3",
		ClientVersion:        "0.1.0",
		ClientCapabilities:   wire.CapHandlePassing,
		AuthToken:            []byte{0xde, 0xad},
		RequestId:            "r1",
		PeerPid:              4242,
		ClientLibName:        "portier-go",
		ClientLibVersion:     "0.1.0",
		PeerAttestationNonce: []byte{0x01},
		CapabilityToken:      []byte{0x02},
		ClientKeepaliveSecs:  1800,
	}
}

// sample is one fixed message as it travels: the complete frame and, when
// the frame carries one, the payload message.
type sample struct {
	name    string        // golden file base name
	what    string        // one line for the golden file's comment
	frame   *pb.Frame     // as written by WriteFrame
	msg     proto.Message // the payload, nil for bare frames
	invalid bool          // the envelope is deliberately not acceptable to DecodeFrame
}

// samples are the fixed values behind testdata/golden. Changing one changes
// the wire bytes: regenerate with -update and review the diff.
func samples() []sample {
	hello := sampleHello()
	helloFrame := must(wire.NewRequest(wire.ProtocolControl, 7, hello))

	negotiated := &pb.HelloReply{Result: &pb.HelloReply_Negotiated{Negotiated: &pb.Negotiated{
		NegotiatedProtocol:    1,
		DaemonVersion:         "1.2.4",
		BackendPipe:           "/run/user/1000/portier/b/echo.sock",
		Warnings:              []string{"wanted_version 1.2.3 resolved to 1.2.4", "second warning"},
		ServerCapabilities:    wire.CapHandlePassing,
		KeepaliveIntervalSecs: 1800,
		HandlePassedToken:     tok,
		ConnectionId:          1,
	}}}
	refused := &pb.HelloReply{Result: &pb.HelloReply_Refused{Refused: wire.NewRefused(
		pb.ErrorCode_ERROR_SERVICE_UNKNOWN, "unknown service", 250*time.Millisecond,
		map[string]string{"service_name": "nope"})}}

	offer := &pb.HandoffOffer{Token: tok, ServiceName: "echo", CorrelationId: 1}
	offerFrame := must(wire.NewRequest(wire.ProtocolHandoff, 1, offer))
	offerFrame.Traceparent, offerFrame.Tracestate = sampleTraceparent, sampleTracestate
	offerWin := &pb.HandoffOffer{HandleValue: 0x1a4, Token: tok, ServiceName: "echo", CorrelationId: 2}
	// The 0-RTT offer carries the HelloReply of the negotiated sample, which
	// announces this handoff (connection 1, the sample token).
	zeroRTT := &pb.ZeroRttOffer{Offer: offer, HelloReply: must(wire.EncodeFrame(must(wire.NewResponse(helloFrame, wire.ProtocolControl, negotiated))))}
	zeroRTTFrame := must(wire.NewRequest(wire.ProtocolZeroRTTOffer, 1, zeroRTT))
	zeroRTTFrame.DeadlineUnixMs = 1_700_000_000_000
	ack := &pb.HandoffAck{Token: tok, Accepted: true, CorrelationId: 1}
	nack := &pb.HandoffAck{Token: tok, ErrorDetail: "backend is quiescing", CorrelationId: 1}

	register := &pb.BackendControl{Msg: &pb.BackendControl_Register{Register: &pb.Register{
		ServiceName:    "echo",
		Version:        "1.2.4",
		Pid:            4243,
		Endpoint:       "/run/user/1000/portier/b/echo.sock",
		SpawnSecret:    []byte("spawn-secret-16b"),
		HandoffCapable: true,
	}}}
	registerFrame := must(wire.NewRequest(wire.ProtocolBackendControl, 1, register))
	registered := &pb.BackendControl{Msg: &pb.BackendControl_RegisterReply{RegisterReply: &pb.RegisterReply{Accepted: true}}}
	registerRefused := &pb.BackendControl{Msg: &pb.BackendControl_RegisterReply{RegisterReply: &pb.RegisterReply{
		Code: pb.ErrorCode_ERROR_PEER_REJECTED, Reason: "spawn secret does not match"}}}
	quiesce := &pb.BackendControl{Msg: &pb.BackendControl_Quiesce{Quiesce: &pb.Quiesce{Reason: "idle for 10m"}}}
	unregister := &pb.BackendControl{Msg: &pb.BackendControl_Unregister{Unregister: &pb.Unregister{}}}
	report := &pb.BackendControl{Msg: &pb.BackendControl_ConnectionReport{ConnectionReport: &pb.ConnectionReport{LiveConnections: 3}}}
	reportIdle := &pb.BackendControl{Msg: &pb.BackendControl_ConnectionReport{ConnectionReport: &pb.ConnectionReport{}}}

	statusReq := &pb.AdminRequest{Verb: &pb.AdminRequest_Status{Status: &pb.StatusRequest{}}}
	statusFrame := must(wire.NewRequest(wire.ProtocolAdmin, 1, statusReq))
	metricsReq := &pb.AdminRequest{Verb: &pb.AdminRequest_Metrics{Metrics: &pb.MetricsRequest{}}}
	metricsFrame := must(wire.NewRequest(wire.ProtocolAdmin, 2, metricsReq))
	status := &pb.AdminResponse{Result: &pb.AdminResponse_Status{Status: &pb.Status{
		BrokerPid: 1000,
		UptimeMs:  61_000,
		Socket:    "/run/user/1000/portier/broker.sock",
		Backends: []*pb.BackendStatus{{
			ServiceName:    "echo",
			Version:        "1.2.4",
			Pid:            4243,
			UptimeMs:       60_000,
			Endpoint:       "/run/user/1000/portier/b/echo.sock",
			HandoffCapable: true,
			Connections:    10,
			Handoffs:       8,
			Fallbacks:      2,
			State:          "ready",
		}},
		Connections: 10,
		Handoffs:    8,
		Fallbacks:   2,
	}}}
	// The broker's directories (Status fields 8 and 9), which `portier
	// services` and `portier doctor` read instead of their own environment.
	statusDirs := &pb.AdminResponse{Result: &pb.AdminResponse_Status{Status: &pb.Status{
		BrokerPid:   1000,
		Socket:      "/run/user/1000/portier/broker.sock",
		ServicesDir: "/home/u/.config/portier/services",
		StateDir:    "/run/user/1000/portier",
	}}}
	metricsText := &pb.AdminResponse{Result: &pb.AdminResponse_MetricsText{
		MetricsText: "# TYPE portier_connections_total counter\nportier_connections_total 10\n"}}
	live := uint32(2)
	statusFailures := &pb.AdminResponse{Result: &pb.AdminResponse_Status{Status: &pb.Status{
		BrokerPid: 1000,
		Backends: []*pb.BackendStatus{{
			ServiceName: "echo", Version: "1.2.4", Pid: 4243, State: "registered", LiveConnections: &live,
		}},
		Failures: []*pb.ServiceFailure{{
			ServiceName:  "db",
			Version:      "2.0.0",
			State:        "rate_limited",
			Code:         pb.ErrorCode_ERROR_BACKEND_SPAWN_FAILED,
			LastError:    "db@2.0.0 exited before registering: exit status 3",
			Failures:     3,
			SinceMs:      1500,
			RetryAfterMs: 28_500,
			Log:          "/run/user/1000/portier/logs/db-2.0.0.log",
		}},
	}}}
	stopReq := &pb.AdminRequest{Verb: &pb.AdminRequest_Stop{Stop: &pb.StopRequest{ServiceName: "echo"}}}
	stopFrame := must(wire.NewRequest(wire.ProtocolAdmin, 3, stopReq))
	restartReq := &pb.AdminRequest{Verb: &pb.AdminRequest_Restart{Restart: &pb.RestartRequest{ServiceName: "echo"}}}
	restartFrame := must(wire.NewRequest(wire.ProtocolAdmin, 4, restartReq))
	logsReq := &pb.AdminRequest{Verb: &pb.AdminRequest_Logs{Logs: &pb.LogsRequest{ServiceName: "echo", Version: "1.2.4"}}}
	logsFrame := must(wire.NewRequest(wire.ProtocolAdmin, 5, logsReq))
	stopped := &pb.AdminResponse{Result: &pb.AdminResponse_ServiceAction{ServiceAction: &pb.ServiceActionResult{
		ServiceName: "echo",
		Stopped:     []*pb.BackendStatus{{ServiceName: "echo", Version: "1.2.4", Pid: 4243, State: "quiescing", LiveConnections: &live}},
	}}}
	restarted := &pb.AdminResponse{Result: &pb.AdminResponse_ServiceAction{ServiceAction: &pb.ServiceActionResult{
		ServiceName: "echo",
		Stopped:     []*pb.BackendStatus{{ServiceName: "echo", Version: "1.2.4", Pid: 4243, State: "quiescing"}},
		Started:     &pb.BackendStatus{ServiceName: "echo", Version: "1.2.4", Pid: 4250, State: "registered", HandoffCapable: true},
	}}}
	restartFailed := &pb.AdminResponse{Result: &pb.AdminResponse_ServiceAction{ServiceAction: &pb.ServiceActionResult{
		ServiceName: "echo",
		StartRefused: wire.NewRefused(pb.ErrorCode_ERROR_BACKEND_SPAWN_FAILED, "echo@1.2.4 exited before registering: exit status 1", time.Second,
			map[string]string{"log": "/run/user/1000/portier/logs/echo-1.2.4.log"}),
	}}}
	logFile := &pb.AdminResponse{Result: &pb.AdminResponse_LogFile{LogFile: &pb.LogFile{
		ServiceName: "echo", Version: "1.2.4", Path: "/run/user/1000/portier/logs/echo-1.2.4.log", Pid: 4243,
	}}}
	adminRefused := &pb.AdminResponse{Result: &pb.AdminResponse_Refused{Refused: wire.NewRefused(
		pb.ErrorCode_ERROR_RATE_LIMITED, "too many admin requests", 1500*time.Millisecond,
		map[string]string{"limit": "10/s"})}}

	return []sample{
		{name: "frame_empty", what: "Frame{} (zero-length body: legal framing, refused by DecodeFrame)", frame: &pb.Frame{}, invalid: true},
		{name: "frame_minimal", what: "Frame{envelope_version: 1}", frame: &pb.Frame{EnvelopeVersion: 1}},
		{name: "frame_all_fields", what: "Frame with every field set (payload_encoding NONE is the zero value)", frame: &pb.Frame{
			EnvelopeVersion: 1,
			Kind:            pb.FrameKind_FRAME_KIND_EVENT,
			PayloadProtocol: wire.ProtocolHandoff,
			Payload:         []byte("hi"),
			RequestId:       300,
			DeadlineUnixMs:  1 << 40,
			Traceparent:     sampleTraceparent,
			Tracestate:      sampleTracestate,
		}},
		{name: "hello", what: "Hello with every client field set, REQUEST, payload_protocol 0, request_id 7", frame: helloFrame, msg: hello},
		{name: "hello_reply_negotiated", what: "HelloReply{negotiated} answering the hello sample", frame: must(wire.NewResponse(helloFrame, wire.ProtocolControl, negotiated)), msg: negotiated},
		{name: "hello_reply_refused", what: "HelloReply{refused: SERVICE_UNKNOWN, details with one entry, retry 250ms}", frame: must(wire.NewResponse(helloFrame, wire.ProtocolControl, refused)), msg: refused},
		{name: "handoff_offer", what: "HandoffOffer (Unix: handle_value 0) with trace context", frame: offerFrame, msg: offer},
		{name: "handoff_offer_windows", what: "HandoffOffer with a Windows handle value", frame: must(wire.NewRequest(wire.ProtocolHandoff, 2, offerWin)), msg: offerWin},
		{name: "handoff_offer_0rtt", what: "ZeroRttOffer (payload protocol 0xF002) carrying the hello_reply_negotiated frame, with the offer's deadline", frame: zeroRTTFrame, msg: zeroRTT},
		{name: "handoff_ack", what: "HandoffAck accepted, RESPONSE to the offer sample", frame: must(wire.NewResponse(offerFrame, wire.ProtocolHandoff, ack)), msg: ack},
		{name: "handoff_ack_rejected", what: "HandoffAck not accepted, with error_detail", frame: must(wire.NewResponse(offerFrame, wire.ProtocolHandoff, nack)), msg: nack},
		{name: "handoff_ready_event", what: "handoff-ready EVENT on the client connection, request_id = connection_id", frame: must(wire.NewEvent(wire.ProtocolHandoff, 1, ack, offerFrame)), msg: ack},
		{name: "backend_register", what: "BackendControl{register}", frame: registerFrame, msg: register},
		{name: "backend_register_reply", what: "BackendControl{register_reply: accepted}", frame: must(wire.NewResponse(registerFrame, wire.ProtocolBackendControl, registered)), msg: registered},
		{name: "backend_register_refused", what: "BackendControl{register_reply: refused}", frame: must(wire.NewResponse(registerFrame, wire.ProtocolBackendControl, registerRefused)), msg: registerRefused},
		{name: "backend_quiesce", what: "BackendControl{quiesce}", frame: must(wire.NewRequest(wire.ProtocolBackendControl, 2, quiesce)), msg: quiesce},
		{name: "backend_unregister", what: "BackendControl{unregister} (an empty message in a oneof)", frame: must(wire.NewRequest(wire.ProtocolBackendControl, 3, unregister)), msg: unregister},
		{name: "backend_connection_report", what: "BackendControl{connection_report: 3 live}, an EVENT", frame: must(wire.NewEvent(wire.ProtocolBackendControl, 0, report, nil)), msg: report},
		{name: "backend_connection_report_idle", what: "BackendControl{connection_report: 0 live} (an empty message in a oneof)", frame: must(wire.NewEvent(wire.ProtocolBackendControl, 0, reportIdle, nil)), msg: reportIdle},
		{name: "admin_request_status", what: "AdminRequest{status}", frame: statusFrame, msg: statusReq},
		{name: "admin_request_metrics", what: "AdminRequest{metrics}", frame: metricsFrame, msg: metricsReq},
		{name: "admin_response_status", what: "AdminResponse{status} with one backend", frame: must(wire.NewResponse(statusFrame, wire.ProtocolAdmin, status)), msg: status},
		{name: "admin_response_status_dirs", what: "AdminResponse{status} with the services and state directories", frame: must(wire.NewResponse(statusFrame, wire.ProtocolAdmin, statusDirs)), msg: statusDirs},
		{name: "admin_response_metrics", what: "AdminResponse{metrics_text}", frame: must(wire.NewResponse(metricsFrame, wire.ProtocolAdmin, metricsText)), msg: metricsText},
		{name: "admin_response_status_failures", what: "AdminResponse{status} with a backend's live connections and a rate-limited service", frame: must(wire.NewResponse(statusFrame, wire.ProtocolAdmin, statusFailures)), msg: statusFailures},
		{name: "admin_request_stop", what: "AdminRequest{stop: echo}", frame: stopFrame, msg: stopReq},
		{name: "admin_request_restart", what: "AdminRequest{restart: echo}", frame: restartFrame, msg: restartReq},
		{name: "admin_request_logs", what: "AdminRequest{logs: echo 1.2.4}", frame: logsFrame, msg: logsReq},
		{name: "admin_response_stopped", what: "AdminResponse{service_action} answering stop", frame: must(wire.NewResponse(stopFrame, wire.ProtocolAdmin, stopped)), msg: stopped},
		{name: "admin_response_restarted", what: "AdminResponse{service_action} answering restart: one stopped, one started", frame: must(wire.NewResponse(restartFrame, wire.ProtocolAdmin, restarted)), msg: restarted},
		{name: "admin_response_restart_failed", what: "AdminResponse{service_action} answering restart whose start was refused", frame: must(wire.NewResponse(restartFrame, wire.ProtocolAdmin, restartFailed)), msg: restartFailed},
		{name: "admin_response_log_file", what: "AdminResponse{log_file}", frame: must(wire.NewResponse(logsFrame, wire.ProtocolAdmin, logFile)), msg: logFile},
		{name: "admin_response_refused", what: "AdminResponse{refused: RATE_LIMITED, retry 1.5s}", frame: must(wire.NewResponse(metricsFrame, wire.ProtocolAdmin, adminRefused)), msg: adminRefused},
	}
}

// sampleNamed returns the sample with the given golden name.
func sampleNamed(name string) sample {
	for _, s := range samples() {
		if s.name == name {
			return s
		}
	}
	panic("no sample named " + name)
}
