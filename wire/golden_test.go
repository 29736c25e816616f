package wire_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

func goldenPath(name string) string { return filepath.Join("testdata", "golden", name+".hex") }

// formatGolden renders a frame as a golden file: comment lines, then the
// bytes in lowercase hex, 32 to a line.
func formatGolden(s sample, b []byte) []byte {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# %s: %s\n", s.name, s.what)
	fmt.Fprintf(&buf, "# %d bytes: 5-byte header, then the Frame body. Regenerate with: go test ./wire -run TestGolden -update\n", len(b))
	h := hex.EncodeToString(b)
	for len(h) > 64 {
		buf.WriteString(h[:64] + "\n")
		h = h[64:]
	}
	buf.WriteString(h + "\n")
	return buf.Bytes()
}

// parseGolden reads the bytes of a golden file, ignoring '#' comment lines
// and white space.
func parseGolden(data []byte) ([]byte, error) {
	var h strings.Builder
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		h.WriteString(line)
	}
	return hex.DecodeString(h.String())
}

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(goldenPath(name))
	if err != nil {
		t.Fatalf("%v (generate the golden files once with -update)", err)
	}
	b, err := parseGolden(data)
	if err != nil {
		t.Fatalf("%s: %v", goldenPath(name), err)
	}
	return b
}

// TestGolden pins the encoding of every sample byte for byte, and checks
// that each golden decodes back to its sample with fields in ascending
// order and no zero value written.
func TestGolden(t *testing.T) {
	all := samples()
	names := map[string]bool{}
	for _, s := range all {
		names[s.name+".hex"] = true
		t.Run(s.name, func(t *testing.T) {
			got, err := wire.EncodeFrame(s.frame)
			if err != nil {
				t.Fatal(err)
			}
			if *update {
				if err := os.WriteFile(goldenPath(s.name), formatGolden(s, got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want := readGolden(t, s.name)
			if !bytes.Equal(got, want) {
				t.Fatalf("encoding changed (if intended, regenerate with -update and review):\n got %x\nwant %x", got, want)
			}

			r := bytes.NewReader(want)
			body, err := wire.ReadFrameBody(r, wire.MaxBody)
			if err != nil {
				t.Fatal(err)
			}
			if r.Len() != 0 {
				t.Errorf("%d bytes left after the frame", r.Len())
			}
			f := new(pb.Frame)
			if err := proto.Unmarshal(body, f); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(f, s.frame) {
				t.Errorf("golden decodes to %v, want %v", f, s.frame)
			}
			if _, err := wire.DecodeFrame(body); (err == nil) == s.invalid {
				t.Errorf("DecodeFrame: err = %v, sample invalid = %v", err, s.invalid)
			}
			checkCanonical(t, "Frame", body, f.ProtoReflect().Descriptor())
			if s.msg != nil {
				m := s.msg.ProtoReflect().New().Interface()
				if err := proto.Unmarshal(f.GetPayload(), m); err != nil {
					t.Fatal(err)
				}
				if !proto.Equal(m, s.msg) {
					t.Errorf("payload decodes to %v, want %v", m, s.msg)
				}
				checkCanonical(t, string(m.ProtoReflect().Descriptor().Name()), f.GetPayload(), m.ProtoReflect().Descriptor())
			}
		})
	}
	// A golden file without a sample is a leftover of a renamed sample.
	entries, err := os.ReadDir(filepath.Join("testdata", "golden"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !names[e.Name()] {
			t.Errorf("testdata/golden/%s belongs to no sample; delete it", e.Name())
		}
	}
}

// checkCanonical fails the test for every problem canonicalProblems finds.
func checkCanonical(t *testing.T, path string, b []byte, md protoreflect.MessageDescriptor) {
	t.Helper()
	for _, p := range canonicalProblems(path, b, md) {
		t.Error(p)
	}
}

// canonicalProblems walks an encoded message: fields must come in ascending
// field-number order (a repeated field may repeat its number), a field with
// implicit presence must not be written with its zero value (so an absent
// kind, REQUEST, is not on the wire), and every field must be known.
// Message-typed fields, map entries included, are checked recursively.
func canonicalProblems(path string, b []byte, md protoreflect.MessageDescriptor) []string {
	var problems []string
	var last protowire.Number
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return append(problems, fmt.Sprintf("%s: bad tag: %v", path, protowire.ParseError(n)))
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return append(problems, fmt.Sprintf("%s: field %d: %v", path, num, protowire.ParseError(m)))
		}
		val := b[n : n+m]
		b = b[n+m:]
		fd := md.Fields().ByNumber(num)
		if fd == nil {
			problems = append(problems, fmt.Sprintf("%s: field %d is not in the schema", path, num))
			continue
		}
		fpath := path + "." + string(fd.Name())
		if num < last || num == last && fd.Cardinality() != protoreflect.Repeated {
			problems = append(problems, fmt.Sprintf("%s: field %d written after field %d", fpath, num, last))
		}
		last = num
		if !fd.HasPresence() && fd.Cardinality() != protoreflect.Repeated {
			switch typ {
			case protowire.VarintType:
				if v, _ := protowire.ConsumeVarint(val); v == 0 {
					problems = append(problems, fpath+": zero value written")
				}
			case protowire.BytesType:
				if v, _ := protowire.ConsumeBytes(val); len(v) == 0 {
					problems = append(problems, fpath+": empty value written")
				}
			}
		}
		if fd.Kind() == protoreflect.MessageKind {
			inner, _ := protowire.ConsumeBytes(val)
			problems = append(problems, canonicalProblems(fpath, inner, fd.Message())...)
		}
	}
	return problems
}

// TestCanonicalProblems shows the order and zero-value checker is not
// vacuous: it flags each kind of non-canonical encoding.
func TestCanonicalProblems(t *testing.T) {
	frame := (&pb.Frame{}).ProtoReflect().Descriptor()
	refused := (&pb.Refused{}).ProtoReflect().Descriptor()
	for _, c := range []struct {
		name string
		body []byte
		want string // substring of the single expected problem, "" for none
	}{
		{"canonical", []byte{0x08, 0x01, 0x10, 0x01}, ""},
		{"explicit REQUEST kind", []byte{0x08, 0x01, 0x10, 0x00}, "Frame.kind: zero value written"},
		{"descending", []byte{0x10, 0x01, 0x08, 0x01}, "Frame.envelope_version: field 1 written after field 2"},
		{"repeated singular", []byte{0x08, 0x01, 0x08, 0x01}, "written after field 1"},
		{"empty string", []byte{0x08, 0x01, 0x42, 0x00}, "Frame.traceparent: empty value written"},
		{"unknown field", []byte{0x08, 0x01, 0x80, 0x01, 0x01}, "field 16 is not in the schema"},
		{"truncated", []byte{0x08}, "field 1:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := canonicalProblems("Frame", c.body, frame)
			if c.want == "" && len(got) != 0 || c.want != "" && (len(got) != 1 || !strings.Contains(got[0], c.want)) {
				t.Errorf("problems = %q, want one containing %q", got, c.want)
			}
		})
	}
	// Map entries are walked as messages: an out-of-order entry is caught.
	details := []byte{0x2a, 0x06, 0x12, 0x01, 'v', 0x0a, 0x01, 'k'}
	if got := canonicalProblems("Refused", details, refused); len(got) != 1 || !strings.Contains(got[0], "Refused.details.key: field 1 written after field 2") {
		t.Errorf("map entry problems = %q", got)
	}
}

// TestGoldenHandVerified spells out, from the protobuf wire rules rather
// than from the Go encoder, the bytes of the frame goldens and of the Hello
// and Refused goldens, so the golden files are not merely self-referential.
//
// The rules used: a field is a tag then a value; the tag is the varint
// (field_number<<3 | wire_type), wire type 0 for varints (uint32, uint64,
// bool, enums) and 2 for length-delimited values (string, bytes, embedded
// messages, map entries), whose value is a varint length then the bytes.
// Varints are base 128, least significant group first, high bit = "more".
// proto3 does not write a field holding its zero value. The frame header is
// 0x01 then the body length as u32 little endian.
func TestGoldenHandVerified(t *testing.T) {
	str := func(s string) []byte { return []byte(s) }

	allFields := cat(
		[]byte{0x08, 0x01},             // 1 envelope_version = 1
		[]byte{0x10, 0x02},             // 2 kind = EVENT (2)
		[]byte{0x18, 0xff, 0xa1, 0x03}, // 3 payload_protocol = 0xD0FF: 0x7f|0x80, (0xD0FF>>7)&0x7f|0x80, 0xD0FF>>14
		[]byte{0x22, 0x02}, str("hi"),  // 4 payload, 2 bytes
		[]byte{0x28, 0xac, 0x02},                         // 5 request_id = 300 = 2<<7 | 0x2c
		[]byte{0x38, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20}, // 7 deadline_unix_ms = 1<<40: five zero groups, then 1<<(40-35)
		[]byte{0x42, 0x37}, str(sampleTraceparent),       // 8 traceparent, 55 bytes
		[]byte{0x4a, 0x15}, str(sampleTracestate), // 9 tracestate, 21 bytes
	) // 6 payload_encoding = NONE (0) is absent.

	hello := cat(
		[]byte{0x08, 0x01},              // 1 client_min_protocol = 1
		[]byte{0x10, 0x01},              // 2 client_max_protocol = 1
		[]byte{0x1a, 0x04}, str("echo"), // 3 service_name
		[]byte{0x22, 0x05}, str("1.2.3"), // 4 wanted_version
		[]byte{0x2a, 0x05}, str("0.1.0"), // 5 client_version
		[]byte{0x30, 0x01},             // 6 client_capabilities = CAP_HANDLE_PASSING
		[]byte{0x3a, 0x02, 0xde, 0xad}, // 7 auth_token
		[]byte{0x42, 0x02}, str("r1"),  // 8 request_id
		// 9 connection_id = 0 is absent.
		[]byte{0x50, 0x92, 0x21},              // 10 peer_pid = 4242 = 0x21<<7 | 0x12
		[]byte{0x5a, 0x0a}, str("portier-go"), // 11 client_lib_name
		[]byte{0x62, 0x05}, str("0.1.0"), // 12 client_lib_version
		[]byte{0x6a, 0x01, 0x01}, // 13 peer_attestation_nonce
		[]byte{0x72, 0x01, 0x02}, // 14 capability_token
		[]byte{0x78, 0x88, 0x0e}, // 15 client_keepalive_secs = 1800 = 0x0e<<7 | 0x08
	)
	if len(hello) != 65 {
		t.Fatalf("hand count of the Hello is off: %d bytes", len(hello))
	}
	helloFrame := cat(
		header(0x47),       // 71-byte body
		[]byte{0x08, 0x01}, // 1 envelope_version = 1
		// 2 kind = REQUEST (0) and 3 payload_protocol = control (0) are absent.
		[]byte{0x22, 0x41}, hello, // 4 payload, 65 bytes
		[]byte{0x28, 0x07}, // 5 request_id = 7
	)

	refusedFrame := cat(
		header(0x3a),                               // 58-byte body
		[]byte{0x08, 0x01},                         // 1 envelope_version = 1
		[]byte{0x10, 0x01},                         // 2 kind = RESPONSE (1)
		[]byte{0x22, 0x32},                         // 4 payload: HelloReply, 50 bytes
		[]byte{0x12, 0x30},                         //   2 refused (oneof), 48 bytes
		[]byte{0x0a, 0x0f}, str("unknown service"), // 1 reason
		[]byte{0x10, 0x01},                      //     2 daemon_min_protocol = 1
		[]byte{0x18, 0x01},                      //     3 daemon_max_protocol = 1
		[]byte{0x20, 0x02},                      //     4 code = SERVICE_UNKNOWN (2)
		[]byte{0x2a, 0x14},                      //     5 details: one map entry, 20 bytes
		[]byte{0x0a, 0x0c}, str("service_name"), // key = 1
		[]byte{0x12, 0x04}, str("nope"), // value = 2
		[]byte{0x30, 0xfa, 0x01}, //     6 retry_after_ms = 250 = 1<<7 | 0x7a
		[]byte{0x28, 0x07},       // 5 request_id = 7, echoed
	)

	want := map[string][]byte{
		"frame_empty":         header(0),
		"frame_minimal":       cat(header(2), []byte{0x08, 0x01}),
		"frame_all_fields":    cat(header(0x66), allFields), // 102-byte body
		"hello":               helloFrame,
		"hello_reply_refused": refusedFrame,
	}
	found := 0
	for _, s := range samples() {
		w, ok := want[s.name]
		if !ok {
			continue
		}
		found++
		t.Run(s.name, func(t *testing.T) {
			got, err := wire.EncodeFrame(s.frame)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, w) {
				t.Errorf("encoder disagrees with the hand encoding:\n  encoder %x\n     hand %x", got, w)
			}
			if g := readGolden(t, s.name); !bytes.Equal(g, w) {
				t.Errorf("golden file disagrees with the hand encoding:\n   golden %x\n     hand %x", g, w)
			}
		})
	}
	if found != len(want) {
		t.Fatalf("only %d of %d hand-verified samples exist", found, len(want))
	}

	// The Hello payload as DecodeHello sees it is the sample.
	h, err := wire.DecodeHello(hello)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(h, sampleHello()) {
		t.Errorf("hand-encoded Hello decodes to %v", h)
	}
}
