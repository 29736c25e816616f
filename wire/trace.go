package wire

import (
	"math"
	"time"

	pb "github.com/portier/portier/wire/portierv1"
)

// Trace-context caps. A version-00 traceparent is exactly 55 bytes; later
// W3C versions may append fields, so more is allowed up to the cap. The
// tracestate cap is the length W3C asks every vendor to propagate.
const (
	MaxTraceparent = 512
	MaxTracestate  = 512
)

// traceparentV00Len is the length of a version-00 traceparent:
// 2 (version) + 1 + 32 (trace-id) + 1 + 16 (parent-id) + 1 + 2 (flags).
const traceparentV00Len = 55

// ValidTraceparent reports whether s is a W3C Trace Context traceparent that
// portier passes on (echoes in responses, puts in a spawned backend's
// environment):
//
//   - version-00: exactly "00-<32 hex>-<16 hex>-<2 hex>", lowercase hex,
//     neither the trace-id nor the parent-id all zeros;
//   - a later version (two lowercase hex digits other than "ff"): the same
//     first 55 bytes, then nothing or '-' and further fields, which must use
//     the same alphabet (lowercase hex and '-'), at most MaxTraceparent bytes
//     in all.
//
// The later-version rule is W3C's forward-compatible parse; the alphabet of
// the extra fields is portier's restriction, so that nothing but hex digits
// and dashes can reach an environment variable or a log.
func ValidTraceparent(s string) bool {
	if len(s) < traceparentV00Len || len(s) > MaxTraceparent {
		return false
	}
	if !lowerHex(s[0:2]) || s[0:2] == "ff" || s[2] != '-' ||
		!lowerHex(s[3:35]) || allZero(s[3:35]) || s[35] != '-' ||
		!lowerHex(s[36:52]) || allZero(s[36:52]) || s[52] != '-' ||
		!lowerHex(s[53:55]) {
		return false
	}
	if len(s) == traceparentV00Len {
		return true
	}
	if s[0:2] == "00" || s[55] != '-' {
		return false
	}
	for i := 56; i < len(s); i++ {
		if c := s[i]; c != '-' && !isLowerHex(c) {
			return false
		}
	}
	return true
}

// ValidTracestate reports whether s may be passed on as a W3C tracestate:
// at most MaxTracestate bytes of printable ASCII (tabs allowed, as the
// list's optional whitespace). Its list structure is not checked: portier
// only carries it along, and never interprets it.
func ValidTracestate(s string) bool {
	if len(s) > MaxTracestate {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '\t' && (c < 0x20 || c > 0x7e) {
			return false
		}
	}
	return true
}

// TraceContext returns f's trace context as portier passes it on. An invalid
// traceparent is dropped, and its tracestate with it: W3C Trace Context has
// a receiver that cannot parse traceparent restart the trace, and a
// tracestate means nothing without its traceparent. A valid traceparent with
// an invalid tracestate keeps the traceparent alone.
func TraceContext(f *pb.Frame) (traceparent, tracestate string) {
	tp := f.GetTraceparent()
	if tp == "" || !ValidTraceparent(tp) {
		return "", ""
	}
	if ts := f.GetTracestate(); ValidTracestate(ts) {
		return tp, ts
	}
	return tp, ""
}

func isLowerHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isLowerHex(s[i]) {
			return false
		}
	}
	return true
}

func allZero(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return false
		}
	}
	return true
}

// FrameDeadline returns the caller's deadline that f carries
// (deadline_unix_ms). ok is false when f has none: 0, or a value too large
// for a time.Time, which no caller means as a deadline.
func FrameDeadline(f *pb.Frame) (deadline time.Time, ok bool) {
	ms := f.GetDeadlineUnixMs()
	if ms == 0 || ms > math.MaxInt64 {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(ms)), true
}
