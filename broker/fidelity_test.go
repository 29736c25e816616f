//go:build unix

package broker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portier/portier/backend"
	"github.com/portier/portier/client"
	"github.com/portier/portier/internal/spawnenv"
	"github.com/portier/portier/servicedef"
	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
	"google.golang.org/protobuf/proto"
)

// Protocol fidelity: raw frames, written the way an independent v1 client
// would, and the broker's answers byte for byte where it matters.

func init() {
	extraRoles["trace"] = runTraceBackend
	extraRoles["slow-start"] = runSlowStart
}

// runTraceBackend serves each connection one line: the TRACEPARENT the
// broker started it with.
func runTraceBackend(ctx context.Context) int {
	l, err := backend.Listen(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "trace role:", err)
		return 1
	}
	go func() { <-ctx.Done(); l.Close() }()
	tp := os.Getenv(spawnenv.TraceParent)
	for {
		c, err := l.Accept()
		if err != nil {
			return 0
		}
		_, _ = io.WriteString(c, tp+"\n")
		c.Close()
	}
}

// slowStartDelay is how long the slow-start role takes before it registers,
// unless its definition sets startDelayEnv (a time.ParseDuration string).
const (
	slowStartDelay = 2 * time.Second
	startDelayEnv  = "PTEST_START_DELAY"
)

// runSlowStart is an echo backend that takes slowStartDelay (or
// $PTEST_START_DELAY) to start.
func runSlowStart(ctx context.Context) int {
	delay := slowStartDelay
	if d, err := time.ParseDuration(os.Getenv(startDelayEnv)); err == nil {
		delay = d
	}
	select {
	case <-time.After(delay):
	case <-ctx.Done():
		return 0
	}
	return runRole("echo")
}

const (
	rawRequestID  = 0x5eed_cafe_f00d
	rawTraceparnt = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	rawTracestate = "congo=t61rcWkgMzE"
)

// rawHello encodes a valid Hello frame for echo@1.0.0 carrying a request id
// and trace context, after hmod and then fmod changed it.
func rawHello(t *testing.T, hmod func(*pb.Hello), fmod func(*pb.Frame)) []byte {
	t.Helper()
	h := &pb.Hello{ClientMinProtocol: 1, ClientMaxProtocol: 1, ServiceName: "echo", WantedVersion: "1.0.0",
		RequestId: "raw-1", ClientLibName: "raw-test"}
	if hmod != nil {
		hmod(h)
	}
	f, err := wire.NewRequest(wire.ProtocolControl, rawRequestID, h)
	if err != nil {
		t.Fatal(err)
	}
	f.Traceparent, f.Tracestate = rawTraceparnt, rawTracestate
	if fmod != nil {
		fmod(f)
	}
	b, err := wire.EncodeFrame(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// exchange writes data on a fresh connection, half-closes it when asked,
// and reads the broker's one reply frame.
func exchange(t *testing.T, sock string, data []byte, halfClose bool) (*pb.Frame, error) {
	t.Helper()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if len(data) > 0 {
		if _, err := c.Write(data); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	if halfClose {
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
	}
	return wire.ReadFrame(c, wire.MaxBody)
}

// helloReplyOf decodes a HelloReply frame.
func helloReplyOf(t *testing.T, f *pb.Frame) *pb.HelloReply {
	t.Helper()
	if f.GetKind() != pb.FrameKind_FRAME_KIND_RESPONSE || f.GetPayloadProtocol() != wire.ProtocolControl {
		t.Fatalf("reply is a %v of payload protocol %#x, want a control RESPONSE", f.GetKind(), f.GetPayloadProtocol())
	}
	hr := new(pb.HelloReply)
	if err := proto.Unmarshal(f.GetPayload(), hr); err != nil {
		t.Fatal(err)
	}
	return hr
}

// refusedOf exchanges data and returns the refusal that answers it.
func refusedOf(t *testing.T, sock string, data []byte, halfClose bool) (*pb.Frame, *pb.Refused) {
	t.Helper()
	f, err := exchange(t, sock, data, halfClose)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	r := helloReplyOf(t, f).GetRefused()
	if r == nil {
		t.Fatalf("reply is not a refusal: %v", helloReplyOf(t, f))
	}
	return f, r
}

// checkEcho: the reply answers the raw Hello's request and continues its
// trace.
func checkEcho(t *testing.T, f *pb.Frame) {
	t.Helper()
	if f.GetRequestId() != rawRequestID || f.GetTraceparent() != rawTraceparnt || f.GetTracestate() != rawTracestate {
		t.Errorf("reply echoes request_id %#x traceparent %q tracestate %q; want %#x %q %q",
			f.GetRequestId(), f.GetTraceparent(), f.GetTracestate(), rawRequestID, rawTraceparnt, rawTracestate)
	}
}

// TestHelloRefusalsMatchV1: each refusal has the code running-process v1
// gives it (the protocol range before anything else; only envelope_version
// a version error; an empty wanted_version refused), VERSION_BLOCKED asks
// for 30 s, and every refusal of a decoded frame echoes its request_id and
// trace context. None of them starts a backend.
func TestHelloRefusalsMatchV1(t *testing.T) {
	h := newHarness(t, nil)
	h.define("echo", "1.0.0", "echo", "")
	const (
		rejected    = pb.ErrorCode_ERROR_PEER_REJECTED
		unsupported = pb.ErrorCode_ERROR_VERSION_UNSUPPORTED
		blocked     = pb.ErrorCode_ERROR_VERSION_BLOCKED
		unknown     = pb.ErrorCode_ERROR_SERVICE_UNKNOWN
	)
	for _, c := range []struct {
		name  string
		hmod  func(*pb.Hello)
		fmod  func(*pb.Frame)
		code  pb.ErrorCode
		field string // details["field"], "" for none
		retry uint64
	}{
		// Item 1: v1 requires wanted_version.
		{"empty wanted_version", func(h *pb.Hello) { h.WantedVersion = "" }, nil, rejected, "wanted_version", 0},
		// Item 2: the protocol range first.
		{"protocol 2..2, empty Hello", func(h *pb.Hello) { *h = pb.Hello{ClientMinProtocol: 2, ClientMaxProtocol: 2} }, nil, unsupported, "client_max_protocol", 0},
		{"protocol 2..2, bad name", func(h *pb.Hello) { h.ClientMinProtocol, h.ClientMaxProtocol, h.ServiceName = 2, 2, "Bad Name" }, nil, unsupported, "client_max_protocol", 0},
		{"protocol 2..2, no version", func(h *pb.Hello) { h.ClientMinProtocol, h.ClientMaxProtocol, h.WantedVersion = 2, 2, "" }, nil, unsupported, "client_max_protocol", 0},
		{"protocol 0..0", func(h *pb.Hello) { h.ClientMinProtocol, h.ClientMaxProtocol = 0, 0 }, nil, unsupported, "client_max_protocol", 0},
		// Item 3: envelope errors other than envelope_version are the peer's.
		{"payload_protocol handoff", nil, func(f *pb.Frame) { f.PayloadProtocol = wire.ProtocolHandoff }, rejected, "payload_protocol", 0},
		{"payload_protocol identity", nil, func(f *pb.Frame) { f.PayloadProtocol = wire.ProtocolIdentity }, rejected, "payload_protocol", 0},
		{"payload_protocol consumer", nil, func(f *pb.Frame) { f.PayloadProtocol = 0x7000 }, rejected, "payload_protocol", 0},
		{"payload_protocol private", nil, func(f *pb.Frame) { f.PayloadProtocol = 0xF002 }, rejected, "payload_protocol", 0},
		{"payload_protocol unregistered", nil, func(f *pb.Frame) { f.PayloadProtocol = 0x1234 }, rejected, "payload_protocol", 0},
		{"payload_encoding ZSTD", nil, func(f *pb.Frame) { f.PayloadEncoding = pb.PayloadEncoding_PAYLOAD_ENCODING_ZSTD }, rejected, "payload_encoding", 0},
		{"payload_encoding 99", nil, func(f *pb.Frame) { f.PayloadEncoding = 99 }, rejected, "payload_encoding", 0},
		{"kind EVENT", nil, func(f *pb.Frame) { f.Kind = pb.FrameKind_FRAME_KIND_EVENT }, rejected, "kind", 0},
		{"kind 9", nil, func(f *pb.Frame) { f.Kind = 9 }, rejected, "kind", 0},
		{"envelope_version 2", nil, func(f *pb.Frame) { f.EnvelopeVersion = 2 }, unsupported, "envelope_version", 0},
		{"envelope_version 2 and compressed", nil, func(f *pb.Frame) {
			f.EnvelopeVersion, f.PayloadEncoding = 2, pb.PayloadEncoding_PAYLOAD_ENCODING_LZ4
		}, unsupported, "envelope_version", 0},
		{"malformed Hello payload", nil, func(f *pb.Frame) { f.Payload = []byte{0x0a, 0x05} }, rejected, "", 0},
		// Refusals past validation echo too.
		{"unknown service", func(h *pb.Hello) { h.ServiceName = "nope" }, nil, unknown, "", 0},
		// Item 5: retrying a blocked version sooner cannot succeed.
		{"version blocked", func(h *pb.Hello) { h.WantedVersion = "2.0.0" }, nil, blocked, "", 30000},
		{"any version, floor above the defined one", func(h *pb.Hello) {
			h.WantedVersion, h.ClientCapabilities = "1.0.1", wire.CapAnyVersion
		}, nil, blocked, "", 30000},
		// Item 12: a Hello whose caller's deadline has passed.
		{"deadline passed", nil, func(f *pb.Frame) { f.DeadlineUnixMs = uint64(time.Now().Add(-time.Second).UnixMilli()) }, rejected, "deadline_unix_ms", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, r := refusedOf(t, h.sock, rawHello(t, c.hmod, c.fmod), false)
			if r.GetCode() != c.code || r.GetDetails()["field"] != c.field || r.GetRetryAfterMs() != c.retry {
				t.Errorf("refused %v field %q retry_after_ms %d (%q); want %v field %q retry %d",
					r.GetCode(), r.GetDetails()["field"], r.GetRetryAfterMs(), r.GetReason(), c.code, c.field, c.retry)
			}
			if r.GetReason() == "" || r.GetDaemonMinProtocol() != 1 || r.GetDaemonMaxProtocol() != 1 {
				t.Errorf("refusal %v", r)
			}
			checkEcho(t, f)
		})
	}
	if n := h.spawns("echo", "started"); n != 0 {
		t.Fatalf("spawns = %d, want 0: no refused Hello starts a backend", n)
	}
	// The same Hello, valid, is served: the cases above fail for their one
	// change only.
	f, err := exchange(t, h.sock, rawHello(t, nil, nil), false)
	if err != nil {
		t.Fatal(err)
	}
	if neg := helloReplyOf(t, f).GetNegotiated(); neg == nil || neg.GetDaemonVersion() != "1.0.0" {
		t.Fatalf("valid raw Hello: %v", helloReplyOf(t, f))
	}
	checkEcho(t, f)
}

// TestFirstFrameRefusalsWithoutAFrame: framing failures leave no frame to
// echo; the framing byte is a version error, an over-cap length is the
// peer's.
func TestFirstFrameRefusalsWithoutAFrame(t *testing.T) {
	h := newHarness(t, nil)
	hello := rawHello(t, nil, nil)
	for _, c := range []struct {
		name string
		data []byte
		code pb.ErrorCode
	}{
		{"framing byte 0x02", append([]byte{0x02}, hello[1:]...), pb.ErrorCode_ERROR_VERSION_UNSUPPORTED},
		{"over the Hello cap", []byte{0x01, 0x01, 0x00, 0x01, 0x00}, pb.ErrorCode_ERROR_PEER_REJECTED},
		{"malformed frame", []byte{0x01, 0x02, 0x00, 0x00, 0x00, 0x08, 0x81}, pb.ErrorCode_ERROR_PEER_REJECTED},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, r := refusedOf(t, h.sock, c.data, false)
			if r.GetCode() != c.code || f.GetRequestId() != 0 || f.GetTraceparent() != "" {
				t.Errorf("got %v (%q) request_id %d; want %v", r.GetCode(), r.GetReason(), f.GetRequestId(), c.code)
			}
		})
	}
}

// TestFirstFrameOtherOpenersStillWork: a broker connection may also open
// with an admin request or a backend's Register; both are served as such,
// with the request echoed.
func TestFirstFrameOtherOpenersStillWork(t *testing.T) {
	h := newHarness(t, nil)
	af, err := wire.NewRequest(wire.ProtocolAdmin, rawRequestID, &pb.AdminRequest{Verb: &pb.AdminRequest_Status{Status: &pb.StatusRequest{}}})
	if err != nil {
		t.Fatal(err)
	}
	af.Traceparent, af.Tracestate = rawTraceparnt, rawTracestate
	f, err := exchange(t, h.sock, mustEncode(t, af), false)
	if err != nil {
		t.Fatal(err)
	}
	resp := new(pb.AdminResponse)
	if err := proto.Unmarshal(f.GetPayload(), resp); err != nil || f.GetPayloadProtocol() != wire.ProtocolAdmin || resp.GetStatus().GetBrokerPid() != uint32(os.Getpid()) {
		t.Fatalf("admin status: %v, %v", resp, err)
	}
	checkEcho(t, f)

	// A Register from a process the broker did not start is refused, by
	// the registration's own RegisterReply.
	rf, err := wire.NewRequest(wire.ProtocolBackendControl, rawRequestID, &pb.BackendControl{Msg: &pb.BackendControl_Register{Register: &pb.Register{
		ServiceName: "echo", Version: "1.0.0", Pid: uint32(os.Getpid()), Endpoint: "/nowhere", SpawnSecret: make([]byte, 32)}}})
	if err != nil {
		t.Fatal(err)
	}
	rf.Traceparent, rf.Tracestate = rawTraceparnt, rawTracestate
	f, err = exchange(t, h.sock, mustEncode(t, rf), false)
	if err != nil {
		t.Fatal(err)
	}
	bc := new(pb.BackendControl)
	if err := proto.Unmarshal(f.GetPayload(), bc); err != nil || f.GetPayloadProtocol() != wire.ProtocolBackendControl ||
		bc.GetRegisterReply() == nil || bc.GetRegisterReply().GetAccepted() || bc.GetRegisterReply().GetCode() != pb.ErrorCode_ERROR_PEER_REJECTED {
		t.Fatalf("register: %v, %v", bc, err)
	}
	checkEcho(t, f)
}

func mustEncode(t *testing.T, f *pb.Frame) []byte {
	t.Helper()
	b, err := wire.EncodeFrame(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAnyVersionHello: a Hello with CapAnyVersion and wanted_version 0.0.0
// (what client.Dial sends without Version) is served the defined version,
// whatever min_version says; the same wanted_version without the bit is a
// named version, judged by the policy.
func TestAnyVersionHello(t *testing.T) {
	h := newHarness(t, nil)
	h.define("echo", "1.4.0", "echo", `min_version = "1.2.0"`+"\n")
	f, err := exchange(t, h.sock, rawHello(t, func(hl *pb.Hello) {
		hl.WantedVersion, hl.ClientCapabilities = wire.AnyVersion, wire.CapAnyVersion
	}, nil), false)
	if err != nil {
		t.Fatal(err)
	}
	if neg := helloReplyOf(t, f).GetNegotiated(); neg.GetDaemonVersion() != "1.4.0" {
		t.Fatalf("any-version Hello: %v", helloReplyOf(t, f))
	}
	_, r := refusedOf(t, h.sock, rawHello(t, func(hl *pb.Hello) { hl.WantedVersion = wire.AnyVersion }, nil), false)
	if r.GetCode() != pb.ErrorCode_ERROR_VERSION_BLOCKED || r.GetDetails()["available_version"] != "1.4.0" {
		t.Fatalf("0.0.0 without the bit: %v", r)
	}
	// The client's version-less Dial is that Hello.
	c, err := h.dial("echo")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.DaemonVersion() != "1.4.0" {
		t.Fatalf("daemon version %q", c.DaemonVersion())
	}
	echo(t, c, "any version")
}

// TestIncompleteHelloAnswered: a peer that half-closes inside its first
// frame, or before any byte, is told PEER_REJECTED "incomplete Hello frame"
// while its socket can still carry the answer; one that stalls inside the
// frame is told so at the deadline; only a peer that stays silent gets
// nothing.
func TestIncompleteHelloAnswered(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.HelloTimeout = 300 * time.Millisecond })
	hello := rawHello(t, nil, nil)
	for _, c := range []struct {
		name      string
		data      []byte
		halfClose bool
	}{
		{"half-close before any byte", nil, true},
		{"half-close inside the header", hello[:3], true},
		{"half-close after the header", hello[:wire.HeaderLen], true},
		{"half-close one byte short", hello[:len(hello)-1], true},
		{"stall inside the header", hello[:2], false},
		{"stall one byte short", hello[:len(hello)-1], false},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, r := refusedOf(t, h.sock, c.data, c.halfClose)
			if r.GetCode() != pb.ErrorCode_ERROR_PEER_REJECTED || !strings.Contains(r.GetReason(), "incomplete Hello frame") {
				t.Errorf("got %v %q, want PEER_REJECTED incomplete Hello frame", r.GetCode(), r.GetReason())
			}
			if f.GetRequestId() != 0 {
				t.Errorf("request_id %d echoed from a frame never read", f.GetRequestId())
			}
		})
	}
	t.Run("silent", func(t *testing.T) {
		f, err := exchange(t, h.sock, nil, false)
		if !errors.Is(err, io.EOF) {
			t.Fatalf("a silent peer got %v, %v; want EOF without a byte", f, err)
		}
	})
}

// TestTraceparentValidated: an invalid traceparent is dropped before it is
// echoed or put in a backend's environment. A NUL no longer makes the
// backend's exec fail (three such Hellos used to lock the service with
// RATE_LIMITED for everyone), and 60 KiB is not echoed.
func TestTraceparentValidated(t *testing.T) {
	h := newHarness(t, nil)
	h.define("trace", "1.0.0", "trace", "")
	h.define("trace-ok", "1.0.0", "trace", "")
	nul := rawTraceparnt[:20] + "\x00" + rawTraceparnt[21:]
	long := rawTraceparnt + "-" + strings.Repeat("ab", 30<<10) // 60 KiB of well-formed later-version fields
	for i, tp := range []string{nul, nul, nul, nul, long, strings.ToUpper(rawTraceparnt)} {
		f, err := exchange(t, h.sock, rawHello(t, func(hl *pb.Hello) { hl.ServiceName = "trace" },
			func(f *pb.Frame) { f.Traceparent = tp }), false)
		if err != nil {
			t.Fatalf("Hello %d: %v", i, err)
		}
		hr := helloReplyOf(t, f)
		if hr.GetNegotiated() == nil {
			t.Fatalf("Hello %d with traceparent %.40q: %v (an invalid traceparent must be dropped, not fail the start)", i, tp, hr)
		}
		if f.GetTraceparent() != "" || f.GetTracestate() != "" || f.GetRequestId() != rawRequestID {
			t.Errorf("Hello %d: reply echoes %.40q / %q (request_id %#x); want no trace context", i, f.GetTraceparent(), f.GetTracestate(), f.GetRequestId())
		}
		if got := traceOfBackend(t, hr.GetNegotiated().GetBackendPipe()); got != "" {
			t.Fatalf("backend started with TRACEPARENT %q", got)
		}
	}
	if n := h.spawns("trace", "started"); n != 1 {
		t.Errorf("spawns = %d, want 1", n)
	}
	// A valid one is echoed and reaches the backend it starts.
	f, err := exchange(t, h.sock, rawHello(t, func(hl *pb.Hello) { hl.ServiceName = "trace-ok" }, nil), false)
	if err != nil {
		t.Fatal(err)
	}
	checkEcho(t, f)
	if got := traceOfBackend(t, helloReplyOf(t, f).GetNegotiated().GetBackendPipe()); got != rawTraceparnt {
		t.Fatalf("backend started with TRACEPARENT %q, want %q", got, rawTraceparnt)
	}
}

// traceOfBackend reads the trace role's line from its endpoint.
func traceOfBackend(t *testing.T, pipe string) string {
	t.Helper()
	c, err := net.DialTimeout("unix", pipe, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(line, "\n")
}

// TestUnsafeExecutableRefused: a definition whose program sits in a
// directory others can write is not started. The refusal says where and
// how to fix it, counts nothing against the spawn budget, and the first
// Hello after the fix is served.
func TestUnsafeExecutableRefused(t *testing.T) {
	h := newHarness(t, nil)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(shortTempDir(t), "bin")
	if err := os.Mkdir(bin, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(exe, filepath.Join(bin, "backend")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bin, 0o777); err != nil {
		t.Fatal(err)
	}
	writeFileAtomicTest(t, filepath.Join(h.svcDir, "echo.toml"), fmt.Sprintf("name = \"echo\"\nversion = \"1.0.0\"\ncommand = [%s]\nenv = { %s = \"echo\" }\n",
		strconv.Quote(filepath.Join(bin, "backend")), roleEnv))
	// More attempts than the spawn budget allows failures.
	for i := 0; i < h.b.cfg.SpawnFailures+2; i++ {
		_, err := h.dial("echo")
		var re *client.RefusedError
		if !errors.As(err, &re) || re.Code != wire.CodeBackendSpawnFailed {
			t.Fatalf("attempt %d: %v, want BACKEND_SPAWN_FAILED", i, err)
		}
		if re.Details["unsafe_path"] != bin || re.Details["problem"] != string(servicedef.ProblemBadMode) ||
			re.Details["fix"] != "chmod go-w "+bin || re.RetryAfter != 0 || !strings.Contains(re.Reason, bin) {
			t.Fatalf("attempt %d: refusal %q %v (retry %s)", i, re.Reason, re.Details, re.RetryAfter)
		}
	}
	if n := h.spawns("echo", "started"); n != 0 {
		t.Fatalf("spawns = %d, want 0", n)
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := h.dial("echo")
	if err != nil {
		t.Fatalf("after the fix: %v", err)
	}
	defer c.Close()
	echo(t, c, "fixed")
}

// TestHelloDeadlineBoundsBackendStart: a Hello waits for a starting backend
// only until its caller's deadline; it is then answered BACKEND_SPAWN_FAILED
// (retry_after 1 s, request echoed) while the start goes on, and a later
// client is served by that same backend.
func TestHelloDeadlineBoundsBackendStart(t *testing.T) {
	h := newHarness(t, nil)
	h.define("slow", "1.0.0", "slow-start", "")
	deadline := uint64(time.Now().Add(300 * time.Millisecond).UnixMilli())
	f, r := refusedOf(t, h.sock, rawHello(t, func(hl *pb.Hello) { hl.ServiceName = "slow" },
		func(f *pb.Frame) { f.DeadlineUnixMs = deadline }), false)
	// Answered before the backend could register: the wait ended at the
	// caller's deadline, not at the registration or start_timeout.
	if st := h.b.status(); len(st.GetBackends()) != 1 || st.GetBackends()[0].GetState() != "starting" {
		t.Fatalf("backends when the Hello was answered: %v, want one still starting", st.GetBackends())
	}
	if r.GetCode() != pb.ErrorCode_ERROR_BACKEND_SPAWN_FAILED || r.GetRetryAfterMs() != 1000 ||
		r.GetDetails()["deadline_unix_ms"] != strconv.FormatUint(deadline, 10) {
		t.Fatalf("refusal %v", r)
	}
	checkEcho(t, f)
	c, err := h.dial("slow")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo(t, c, "after the start")
	if n := h.spawns("slow", "started"); n != 1 {
		t.Fatalf("spawns = %d, want 1 (the start went on)", n)
	}
}

// TestLookupRefusalsMatchCauses: an invalid definition and a refused
// services directory are told apart from an unknown service and from a
// broker failure for a client that set CapRefusalCodes, while a v1 client
// (no such bit) gets the codes a running-process broker gives; both get
// the same actionable reason and details, no retry delay (only a person
// fixes either), and the unsafe directory is logged.
func TestLookupRefusalsMatchCauses(t *testing.T) {
	var logs syncBuffer
	h := newHarness(t, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(testWriter{t}, &logs), nil))
	})
	h.define("echo", "1.0.0", "echo", "")
	badFile := filepath.Join(h.svcDir, "bad.toml")
	writeFileAtomicTest(t, badFile, "name = \"bad\"\nversion = \"1.0.0\"\ncommand = []\n")
	hello := func(service string, caps uint64) []byte {
		return rawHello(t, func(h *pb.Hello) { h.ServiceName, h.ClientCapabilities = service, caps }, nil)
	}
	check := func(name string, data []byte, code pb.ErrorCode, details map[string]string, reason string) {
		t.Helper()
		_, r := refusedOf(t, h.sock, data, false)
		if r.GetCode() != code || r.GetRetryAfterMs() != 0 {
			t.Errorf("%s: refused %v retry_after_ms %d (%q); want %v, no retry", name, r.GetCode(), r.GetRetryAfterMs(), r.GetReason(), code)
		}
		for k, v := range details {
			if got := r.GetDetails()[k]; !strings.Contains(got, v) {
				t.Errorf("%s: details[%q] = %q, want it to contain %q", name, k, got, v)
			}
		}
		if !strings.Contains(r.GetReason(), reason) {
			t.Errorf("%s: reason %q does not say %q", name, r.GetReason(), reason)
		}
	}
	invalid := map[string]string{"definition": badFile, "definition_error": badFile + ":3"}
	check("invalid, v1 client", hello("bad", 0), pb.ErrorCode_ERROR_SERVICE_UNKNOWN, invalid, "fix the file")
	check("invalid, portier client", hello("bad", wire.CapRefusalCodes|wire.CapHandlePassing),
		pb.ErrorCode_ERROR_DEFINITION_INVALID, invalid, "fix the file")
	check("unknown, portier client", hello("nope", wire.CapRefusalCodes), pb.ErrorCode_ERROR_SERVICE_UNKNOWN, nil, "add nope.toml")

	if err := os.Chmod(h.svcDir, 0o777); err != nil {
		t.Fatal(err)
	}
	unsafe := map[string]string{"services_dir": h.svcDir, "problem": "bad_mode"}
	check("unsafe dir, v1 client", hello("echo", 0), pb.ErrorCode_ERROR_INTERNAL, unsafe, "chmod go-w "+h.svcDir)
	check("unsafe dir, portier client", hello("echo", wire.CapRefusalCodes), pb.ErrorCode_ERROR_SERVICES_DIR_UNSAFE, unsafe, "chmod go-w "+h.svcDir)
	if !strings.Contains(logs.String(), "services directory refused") {
		t.Errorf("the refused directory was not logged:\n%s", logs.String())
	}
	if err := os.Chmod(h.svcDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if n := h.spawns("echo", "started"); n != 0 {
		t.Fatalf("spawns = %d, want 0", n)
	}
	// The client SDK sets the bit: its errors name the cause.
	if _, err := h.dial("bad"); !errors.Is(err, client.ErrDefinitionInvalid) {
		t.Fatalf("dial bad: %v, want ErrDefinitionInvalid", err)
	}
}
