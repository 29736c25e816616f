//go:build linux || darwin

package backend

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/portier/portier/internal/fdcount"
	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// TestZeroRTTOffer: a backend registers as taking 0-RTT offers, and for one
// writes the HelloReply it carries, byte for byte, then the ready event,
// before its application reads the client's early data.
func TestZeroRTTOffer(t *testing.T) {
	fdcount.Check(t)
	fb := newFakeBroker(t)
	fb.setEnv()
	l, p := listenUnder(t, fb)
	if !p.reg.GetZeroRttCapable() {
		t.Fatalf("Register %v does not take 0-RTT offers", p.reg)
	}

	client, fd := clientPair(t)
	if _, err := client.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	tok := newToken()
	f, reply := zeroRTTOffer(t, 0, 7, tok, 7, tok)
	p.offer(f, fd)
	got := make([]byte, len(reply))
	_ = client.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, reply) {
		t.Fatalf("client read %x, %v; want the offer's HelloReply %x", got, err, reply)
	}
	readReady(t, client, 7, tok)
	c := accept(t, l)
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	var early [5]byte
	if _, err := io.ReadFull(c, early[:]); err != nil || string(early[:]) != "early" {
		t.Fatalf("application read %q, %v; want the pipelined bytes \"early\"", early[:], err)
	}
	if ack := p.readAck(); !ack.GetAccepted() || ack.GetCorrelationId() != 7 || !bytes.Equal(ack.GetToken(), tok) {
		t.Fatalf("ACK %v, want accepted for connection 7", ack)
	}
}

// TestZeroRTTOfferRejected: a 0-RTT offer that must not be adopted (its
// HelloReply announces another handoff, or it expired) is rejected like any
// offer: nothing is written to the client, not even the HelloReply.
func TestZeroRTTOfferRejected(t *testing.T) {
	fdcount.Check(t)
	fb := newFakeBroker(t)
	fb.setEnv()
	l, p := listenUnder(t, fb)
	tok := newToken()
	cases := map[string]func() *pb.Frame{
		"reply for another connection": func() *pb.Frame { f, _ := zeroRTTOffer(t, 0, 10, tok, 11, tok); return f },
		"reply with another token":     func() *pb.Frame { f, _ := zeroRTTOffer(t, 0, 10, tok, 10, newToken()); return f },
		"expired": func() *pb.Frame {
			f, _ := zeroRTTOffer(t, 0, 10, tok, 10, tok)
			f.DeadlineUnixMs = uint64(time.Now().Add(-time.Second).UnixMilli())
			return f
		},
	}
	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			client, fd := clientPair(t)
			p.offer(mk(), fd)
			if ack := p.readAck(); ack.GetAccepted() || ack.GetErrorDetail() == "" {
				t.Fatalf("ACK %v, want a rejection with its reason", ack)
			}
			expectClosed(t, client)
		})
	}
	// The listener carries on.
	client, fd := clientPair(t)
	f, _ := zeroRTTOffer(t, 0, 12, tok, 12, tok)
	p.offer(f, fd)
	if _, err := wire.ReadFrame(client, wire.MaxBody); err != nil {
		t.Fatal(err)
	}
	readReady(t, client, 12, tok)
	accept(t, l)
	if !p.readAck().GetAccepted() {
		t.Fatal("offer after the rejections not accepted")
	}
}

// TestNoZeroRTTOption: NoZeroRTT registers without taking 0-RTT offers.
func TestNoZeroRTTOption(t *testing.T) {
	fb := newFakeBroker(t)
	fb.setEnv()
	_, p := listenUnder(t, fb, NoZeroRTT())
	if !p.reg.GetHandoffCapable() || p.reg.GetZeroRttCapable() {
		t.Fatalf("Register %v, want handoffs without 0-RTT", p.reg)
	}
}
