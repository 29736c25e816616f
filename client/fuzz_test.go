package client

import (
	"bytes"
	"io"
	"testing"

	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// FuzzHandshake feeds arbitrary broker/backend bytes through the client's
// reply decoding: the read-ahead frame reader, the HelloReply checks and the
// ready-event check. It must never panic, and a ready event is accepted only
// when it carries the token and connection id.
func FuzzHandshake(f *testing.F) {
	const reqID = 1
	hf := &pb.Frame{RequestId: reqID}
	token := bytes.Repeat([]byte{0xA5}, wire.TokenLen)
	enc := func(fr *pb.Frame, err error) []byte {
		if err != nil {
			f.Fatal(err)
		}
		b, err := wire.EncodeFrame(fr)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	neg := enc(wire.NewResponse(hf, wire.ProtocolControl, &pb.HelloReply{Result: &pb.HelloReply_Negotiated{
		Negotiated: &pb.Negotiated{NegotiatedProtocol: 1, BackendPipe: "/run/b.sock", ServerCapabilities: 1,
			HandlePassedToken: token, ConnectionId: 7}}}))
	ready := enc(wire.NewEvent(wire.ProtocolHandoff, 7, &pb.HandoffAck{Token: token, Accepted: true, CorrelationId: 7}, nil))
	refused := enc(wire.NewResponse(hf, wire.ProtocolControl, &pb.HelloReply{Result: &pb.HelloReply_Refused{
		Refused: wire.NewRefused(pb.ErrorCode_ERROR_RATE_LIMITED, "slow", 5, map[string]string{"k": "v"})}}))
	f.Add(append(append(append([]byte{}, neg...), ready...), "app"...))
	f.Add(neg)
	f.Add(refused)
	f.Add([]byte{0x01, 0, 0, 0, 0})
	f.Add([]byte{0x01, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := &frameReader{r: &chunkReader{data: data}, buf: make([]byte, 16)}
		rf, err := fr.next(maxReplyBody)
		if err != nil {
			return
		}
		n, err := parseReply(rf, reqID)
		if err != nil {
			return
		}
		tok, id := n.GetHandlePassedToken(), n.GetConnectionId()
		ev, err := fr.next(maxReplyBody)
		if err != nil {
			return
		}
		if readyMatches(ev, tok, id) {
			ack, err := wire.DecodeHandoffAck(ev.GetPayload())
			if err != nil || !ack.GetAccepted() || !bytes.Equal(ack.GetToken(), tok) ||
				ack.GetCorrelationId() != id || ev.GetRequestId() != id {
				t.Fatalf("accepted a ready event that does not match: %v", ack)
			}
		}
		if rest := fr.rest(); len(rest) > len(data) {
			t.Fatalf("rest %d bytes from %d input bytes", len(rest), len(data))
		}
	})
}

// chunkReader returns its data a few bytes per Read, to exercise the
// reader's refills.
type chunkReader struct {
	data []byte
	n    int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	c.n++
	k := min(len(p), len(c.data), 1+c.n%7)
	copy(p, c.data[:k])
	c.data = c.data[k:]
	return k, nil
}
