package wire_test

import (
	"math"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// traceparentV00RE is W3C Trace Context's version-00 traceparent; the
// all-zero ids it forbids are checked separately.
var traceparentV00RE = regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)

// specTraceparent is the rule of ValidTraceparent written from W3C's text:
// version-00 exactly; a later version (not ff) with the version-00 layout
// in its first 55 bytes, then nothing or '-' and fields of [0-9a-f-], up to
// the cap.
func specTraceparent(s string) bool {
	if len(s) < 55 || len(s) > wire.MaxTraceparent {
		return false
	}
	if s[3:35] == strings.Repeat("0", 32) || s[36:52] == strings.Repeat("0", 16) {
		return false
	}
	if strings.HasPrefix(s, "00") {
		return traceparentV00RE.MatchString(s)
	}
	if s[:2] == "ff" || !traceparentV00RE.MatchString("00"+s[2:55]) || !regexp.MustCompile(`^[0-9a-f]{2}$`).MatchString(s[:2]) {
		return false
	}
	return len(s) == 55 || regexp.MustCompile(`^-[0-9a-f-]*$`).MatchString(s[55:])
}

func TestValidTraceparent(t *testing.T) {
	const (
		tid = "0af7651916cd43dd8448eb211c80319c"
		pid = "b7ad6b7169203331"
	)
	for _, c := range []struct {
		s    string
		want bool
	}{
		{sampleTraceparent, true},
		{"00-" + tid + "-" + pid + "-00", true},
		{"00-" + tid + "-" + pid + "-ff", true}, // flags are not interpreted
		{"", false},
		{"00-" + strings.Repeat("0", 32) + "-" + pid + "-01", false}, // all-zero trace-id
		{"00-" + tid + "-" + strings.Repeat("0", 16) + "-01", false}, // all-zero parent-id
		{"00-" + strings.ToUpper(tid) + "-" + pid + "-01", false},    // uppercase hex
		{"00-" + tid + "-" + pid + "-0A", false},
		{"0A-" + tid + "-" + pid + "-01", false},
		{"ff-" + tid + "-" + pid + "-01", false},     // version ff is invalid
		{"00-" + tid + "-" + pid + "-01-", false},    // version 00 is exactly 55 bytes
		{"00-" + tid + "-" + pid + "-01-ab", false},  // ... even with a well-formed tail
		{"00-" + tid + "-" + pid + "-01\x00", false}, // NUL after a valid value
		{"00-" + tid[:31] + "\x00-" + pid + "-01", false},
		{"00-" + tid + "-" + pid + "-0", false},  // short
		{"00_" + tid + "-" + pid + "-01", false}, // wrong separator
		{"00-" + tid + "-" + pid + "_01", false},
		{" 00-" + tid + "-" + pid + "-01", false},
		{"00-" + tid + "-" + pid + "-01\n", false},
		{"01-" + tid + "-" + pid + "-01", true},         // a later version, no extra fields
		{"cc-" + tid + "-" + pid + "-01-abc-123", true}, // a later version's fields
		{"cc-" + tid + "-" + pid + "-01abc", false},     // a later version needs '-' at 55
		{"cc-" + tid + "-" + pid + "-01-ABC", false},    // portier's alphabet for the fields
		{"cc-" + tid + "-" + pid + "-01-a=b", false},
		{"cc-" + tid + "-" + pid + "-01-" + strings.Repeat("a", wire.MaxTraceparent-56), true},
		{"cc-" + tid + "-" + pid + "-01-" + strings.Repeat("a", wire.MaxTraceparent-55), false}, // over the cap
		{"00-" + tid + "-" + pid + "-01" + strings.Repeat("a", 60<<10), false},                  // 60 KiB
	} {
		if got := wire.ValidTraceparent(c.s); got != c.want {
			t.Errorf("ValidTraceparent(%q) = %v, want %v", c.s, got, c.want)
		}
		if spec := specTraceparent(c.s); spec != c.want {
			t.Errorf("the spec rule says %v for %q; the table says %v", spec, c.s, c.want)
		}
	}
}

func TestValidTracestate(t *testing.T) {
	for _, c := range []struct {
		s    string
		want bool
	}{
		{"", true},
		{sampleTracestate, true},
		{"rojo=00f067aa0ba902b7, congo=t61rcWkgMzE", true},
		{"a=b,\tc=d", true},
		{strings.Repeat("a", wire.MaxTracestate), true},
		{strings.Repeat("a", wire.MaxTracestate+1), false},
		{"a=b\x00", false},
		{"a=b\n", false},
		{"a=\u00e9", false},
		{"a=\x7f", false},
	} {
		if got := wire.ValidTracestate(c.s); got != c.want {
			t.Errorf("ValidTracestate(%q) = %v, want %v", c.s, got, c.want)
		}
	}
}

// TestTraceContext: what a receiver passes on. An invalid traceparent is
// dropped together with its tracestate (W3C: restart the trace); an
// invalid tracestate alone is dropped by itself.
func TestTraceContext(t *testing.T) {
	nul := sampleTraceparent[:10] + "\x00" + sampleTraceparent[11:]
	for _, c := range []struct {
		name           string
		tp, ts         string
		wantTP, wantTS string
	}{
		{"valid", sampleTraceparent, sampleTracestate, sampleTraceparent, sampleTracestate},
		{"none", "", "", "", ""},
		{"tracestate without traceparent", "", sampleTracestate, "", ""},
		{"NUL in traceparent", nul, sampleTracestate, "", ""},
		{"60 KiB traceparent", sampleTraceparent + strings.Repeat("-a", 30<<10), "", "", ""},
		{"bad tracestate", sampleTraceparent, "a=\x01", sampleTraceparent, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &pb.Frame{Traceparent: c.tp, Tracestate: c.ts}
			tp, ts := wire.TraceContext(f)
			if tp != c.wantTP || ts != c.wantTS {
				t.Errorf("TraceContext = %q, %q; want %q, %q", tp, ts, c.wantTP, c.wantTS)
			}
			// Responses and events carry exactly that.
			resp, err := wire.NewResponse(f, wire.ProtocolControl, &pb.HelloReply{})
			if err != nil {
				t.Fatal(err)
			}
			ev, err := wire.NewEvent(wire.ProtocolHandoff, 1, &pb.HandoffAck{}, f)
			if err != nil {
				t.Fatal(err)
			}
			for _, out := range []*pb.Frame{resp, ev} {
				if out.GetTraceparent() != c.wantTP || out.GetTracestate() != c.wantTS {
					t.Errorf("%s carries %q, %q; want %q, %q", out.GetKind(), out.GetTraceparent(), out.GetTracestate(), c.wantTP, c.wantTS)
				}
			}
		})
	}
	if tp, ts := wire.TraceContext(nil); tp != "" || ts != "" {
		t.Errorf("TraceContext(nil) = %q, %q", tp, ts)
	}
}

func TestFrameDeadline(t *testing.T) {
	if _, ok := wire.FrameDeadline(&pb.Frame{}); ok {
		t.Error("deadline_unix_ms 0 is a deadline")
	}
	if _, ok := wire.FrameDeadline(nil); ok {
		t.Error("a nil frame has a deadline")
	}
	if _, ok := wire.FrameDeadline(&pb.Frame{DeadlineUnixMs: math.MaxUint64}); ok {
		t.Error("2^64-1 ms (past what time.Time holds) is a deadline; it must not read as one in the past")
	}
	want := time.Date(2030, 1, 2, 3, 4, 5, 6e6, time.UTC)
	got, ok := wire.FrameDeadline(&pb.Frame{DeadlineUnixMs: uint64(want.UnixMilli())})
	if !ok || !got.Equal(want) {
		t.Errorf("FrameDeadline = %v, %v; want %v", got, ok, want)
	}
	if d, ok := wire.FrameDeadline(&pb.Frame{DeadlineUnixMs: math.MaxInt64}); !ok || !d.After(want) {
		t.Errorf("the largest deadline = %v, %v", d, ok)
	}
}
