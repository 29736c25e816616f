package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	pb "github.com/portier/portier/wire/portierv1"
	"google.golang.org/protobuf/proto"
)

// Framing constants of protocol v1.
const (
	// FramingVersion is the first byte of every frame.
	FramingVersion byte = 0x01
	// HeaderLen is the size of the frame header: version byte plus u32 LE length.
	HeaderLen = 5
	// MaxBody is the largest frame body any portier peer accepts.
	MaxBody = 16 << 20
	// MaxHelloBody caps the first frame a broker reads on a new connection,
	// so an unauthenticated peer cannot make it allocate 16 MiB.
	MaxHelloBody = 64 << 10
	// EnvelopeVersion is the only Frame.envelope_version accepted.
	EnvelopeVersion = 1
	// ProtocolVersion is the broker protocol this implementation speaks.
	ProtocolVersion = 1
)

// Payload-protocol registry (Frame.payload_protocol).
const (
	ProtocolControl        uint32 = 0x0000 // Hello / HelloReply
	ProtocolAdmin          uint32 = 0xAD01 // admin verbs (portier's own)
	ProtocolIdentity       uint32 = 0xB232 // backend identity probe
	ProtocolHandoff        uint32 = 0xD0FF // HandoffOffer, HandoffAck, ready event
	ProtocolBackendControl uint32 = 0xF001 // portier backend registration, quiesce
	ProtocolZeroRTTOffer   uint32 = 0xF002 // portier's 0-RTT handoff offer (ZeroRttOffer)
)

// CapHandlePassing is capability bit 0: the client adopts handed-off
// connections (Hello) / the broker will attempt a handoff (Negotiated).
const CapHandlePassing uint64 = 1 << 0

// CapZeroRTT (CAP_PORTIER_0RTT) is a portier extension of the Hello's
// capability bits (extensions use bit 16 and up, which a running-process v1
// broker ignores), sent together with CapHandlePassing. It says that the
// client answers a connection that ends before any HelloReply arrived with
// a fresh Hello without either bit, so a portier broker may let the
// backend write Negotiated and the handoff-ready event together (a 0-RTT
// handoff: the broker writes nothing to the client). Without it the broker
// writes Negotiated itself before it sends the offer.
const CapZeroRTT uint64 = 1 << 16

// CapAnyVersion is a portier extension of the Hello's capability bits. It
// turns wanted_version from the version the client wants into the lowest
// version it accepts: a portier broker then serves whatever version the
// service definition names, provided it is at least wanted_version, and
// does not apply the definition's min_version or allow_versions (they judge
// clients that name a version).
//
// v1 requires a wanted_version in every Hello and has no value meaning "any
// version", so portier's client sends this bit with wanted_version "0.0.0"
// (AnyVersion) when it is given no version. A broker that does not know the
// bit judges "0.0.0" like any other wanted_version: a running-process v1
// broker serves it unless the definition sets a min_version, and refuses it
// VERSION_BLOCKED otherwise.
const CapAnyVersion uint64 = 1 << 17

// CapRefusalCodes is a portier extension of the Hello's capability bits:
// the client understands the refusal codes portier adds to v1's
// (CodeDefinitionInvalid, CodeServicesDirUnsafe). Without it the broker
// answers those causes with the v1 code a running-process client expects
// (SERVICE_UNKNOWN, INTERNAL), so its replies to v1 clients stay those of
// a v1 broker.
const CapRefusalCodes uint64 = 1 << 18

// AnyVersion is the wanted_version sent with CapAnyVersion by a client that
// accepts every version.
const AnyVersion = "0.0.0"

// Sentinel errors for framing failures; the typed errors below match them
// with errors.Is.
var (
	ErrBadFramingVersion = errors.New("wire: unsupported framing version")
	ErrFrameTooLarge     = errors.New("wire: frame too large")
	ErrTruncated         = errors.New("wire: truncated frame")
)

// FramingVersionError reports a first header byte other than 0x01.
type FramingVersionError struct{ Got byte }

func (e *FramingVersionError) Error() string {
	return fmt.Sprintf("wire: unsupported framing version 0x%02x (want 0x%02x)", e.Got, FramingVersion)
}

// Is matches ErrBadFramingVersion.
func (e *FramingVersionError) Is(target error) bool { return target == ErrBadFramingVersion }

// TooLargeError reports an announced body length above the cap in force.
// It is returned before any body byte is read or allocated.
type TooLargeError struct{ Len, Max uint32 }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("wire: frame body of %d bytes exceeds the %d-byte cap", e.Len, e.Max)
}

// Is matches ErrFrameTooLarge.
func (e *TooLargeError) Is(target error) bool { return target == ErrFrameTooLarge }

// TruncatedError reports a connection that ended inside a frame.
type TruncatedError struct {
	Part      string // "header" or "body"
	Want, Got int
}

func (e *TruncatedError) Error() string {
	return fmt.Sprintf("wire: truncated frame %s: got %d of %d bytes", e.Part, e.Got, e.Want)
}

// Is matches ErrTruncated and io.ErrUnexpectedEOF.
func (e *TruncatedError) Is(target error) bool {
	return target == ErrTruncated || target == io.ErrUnexpectedEOF
}

// ParseHeader checks a 5-byte frame header against max and returns the body
// length. A header shorter than HeaderLen is a *TruncatedError rather than a
// panic, because callers that read the socket themselves may hand over a
// short read. max means what it means for ReadFrameBody: a value outside
// 1..MaxBody is MaxBody, so no caller can lift the 16 MiB cap by accident.
func ParseHeader(h []byte, max int) (int, error) {
	if len(h) < HeaderLen {
		return 0, &TruncatedError{Part: "header", Want: HeaderLen, Got: len(h)}
	}
	max = effectiveMax(max)
	if h[0] != FramingVersion {
		return 0, &FramingVersionError{Got: h[0]}
	}
	n := binary.LittleEndian.Uint32(h[1:HeaderLen])
	if uint64(n) > uint64(max) {
		return 0, &TooLargeError{Len: n, Max: uint32(max)}
	}
	return int(n), nil
}

// ReadFrameBody reads exactly one frame header and exactly its body from r,
// never more. A clean end of stream before the first header byte is io.EOF.
// The length is checked against max (at most MaxBody) before the body is
// allocated.
func ReadFrameBody(r io.Reader, max int) ([]byte, error) {
	n, err := ReadHeader(r, max)
	if err != nil {
		return nil, err
	}
	return ReadBody(r, n)
}

// ReadHeader reads exactly one frame header from r and returns the body
// length, checked against max as ParseHeader does. A clean end of stream
// before the first byte is io.EOF, one within the header a
// *TruncatedError. With ReadBody it is ReadFrameBody in two steps, for a
// reader that waits differently for the header than for the body.
func ReadHeader(r io.Reader, max int) (int, error) {
	var h [HeaderLen]byte
	if n, err := io.ReadFull(r, h[:]); err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return 0, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, &TruncatedError{Part: "header", Want: HeaderLen, Got: n}
		}
		return 0, err
	}
	return ParseHeader(h[:], max)
}

// ReadBody reads exactly n body bytes (a length ReadHeader returned) from
// r. An end of stream within them is a *TruncatedError.
func ReadBody(r io.Reader, n int) ([]byte, error) {
	body := make([]byte, n)
	if got, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &TruncatedError{Part: "body", Want: n, Got: got}
		}
		return nil, err
	}
	return body, nil
}

// effectiveMax maps a caller's cap to the one in force: 1..MaxBody as given,
// anything else MaxBody.
func effectiveMax(max int) int {
	if max <= 0 || max > MaxBody {
		return MaxBody
	}
	return max
}

// ReadFrame reads one frame (see ReadFrameBody) and decodes it (see
// DecodeFrame).
func ReadFrame(r io.Reader, max int) (*pb.Frame, error) {
	body, err := ReadFrameBody(r, max)
	if err != nil {
		return nil, err
	}
	return DecodeFrame(body)
}

var marshalOpts = proto.MarshalOptions{Deterministic: true}

// Marshal encodes m deterministically (fields in ascending order, as the
// protocol requires for byte-exact output).
func Marshal(m proto.Message) ([]byte, error) { return marshalOpts.Marshal(m) }

// AppendFrame appends the header and deterministic encoding of f to dst.
// On error dst is returned unchanged, so a caller batching frames into one
// buffer never sends a header whose body is missing.
func AppendFrame(dst []byte, f *pb.Frame) ([]byte, error) {
	size := marshalOpts.Size(f)
	if size > MaxBody {
		// uint64 keeps this compiling where int is 32 bits.
		return dst, &TooLargeError{Len: uint32(min(uint64(size), math.MaxUint32)), Max: MaxBody}
	}
	out := append(dst, FramingVersion, 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(out[len(out)-4:], uint32(size))
	out, err := marshalOpts.MarshalAppend(out, f)
	if err != nil {
		// Invalid UTF-8 in a string field is the only way to get here.
		return dst, fmt.Errorf("wire: encode frame: %w", err)
	}
	return out, nil
}

// EncodeFrame returns the complete bytes (header and body) of f.
func EncodeFrame(f *pb.Frame) ([]byte, error) { return AppendFrame(nil, f) }

// WriteFrame writes f to w in a single Write call, so a frame is never
// interleaved with another writer's bytes on a stream socket.
func WriteFrame(w io.Writer, f *pb.Frame) error {
	b, err := EncodeFrame(f)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
