// Package wire owns portier's wire format: the 5-byte framing, the protobuf
// messages of protocol v1 (generated into package portierv1), the size caps,
// the validation of every field a peer sends, and the stable error codes of
// refusals (ErrorCode, the type SDK users see).
//
// Every message read from a peer goes through a Decode function here, which
// unmarshals and validates it; no other package calls proto.Unmarshal on
// peer input.
//
// The format is byte-compatible with the running-process v1 broker envelope
// (see docs/PROTOCOL.md). Frames are read with exact-length reads only: ReadFrame
// never consumes a byte past the frame it returns, so bytes a client
// pipelines after its Hello stay in the socket for whoever owns it next.
//
// Fuzzing: each decoder has a fuzz target with committed seeds under
// testdata/fuzz. Run one for a minute with, for example,
//
//	go test ./wire -run='^$' -fuzz='^FuzzReadFrame$' -fuzztime=60s
//
// and likewise for FuzzDecodeFrame, FuzzValidateHello,
// FuzzDecodeHandoffOffer, FuzzDecodeBackendControl, FuzzDecodeAdminRequest,
// FuzzDecodeAdminResponse, FuzzDecodeHelloReply and FuzzTraceContext.
package wire
