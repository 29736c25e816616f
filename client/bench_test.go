package client

import (
	"io"
	"net"
	"sync"
	"testing"

	pb "github.com/portier/portier/wire/portierv1"
)

// The benchmarks measure the time to a first response: Dial with a 5-byte
// request as early data, then read the backend's 2-byte answer. The fake
// broker answers without routing and plays the backend in-process, so the
// numbers show the client's share of the cost only; they are informational.

const benchRequest = "GET /"

// benchServe plays the backend's application: read the request, answer
// "OK", then wait for the client to close.
func benchServe(c net.Conn) {
	buf := make([]byte, len(benchRequest))
	if _, err := io.ReadFull(c, buf); err != nil {
		return
	}
	write(c, []byte("OK"))
	drain(c)
}

func BenchmarkDialHandoff(b *testing.B) {
	dir := newDir(b)
	fb := startBroker(b, dir, func(fb *fakeBroker, c net.Conn, hf *pb.Frame, _ *pb.Hello) {
		write(c, handoffReply(fb.t, hf, "/nonexistent"))
		write(c, goodReady(fb.t))
		benchServe(c)
	})
	benchDial(b, fb, Handoff)
}

func BenchmarkDialReconnect(b *testing.B) {
	dir := newDir(b)
	path := endpointIn(dir, "backend")
	ln, err := listenAt(path)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				benchServe(c)
			})
		}
	})
	b.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	fb := startBroker(b, dir, func(fb *fakeBroker, c net.Conn, hf *pb.Frame, _ *pb.Hello) {
		write(c, replyBytes(fb.t, hf, negotiated(path, nil, 0)))
	})
	benchDial(b, fb, Reconnect)
}

func benchDial(b *testing.B, fb *fakeBroker, want Route) {
	early := EarlyData([]byte(benchRequest))
	sock := Socket(fb.sock)
	resp := make([]byte, 2)
	b.ReportAllocs()
	for b.Loop() {
		c, err := Dial(b.Context(), "echo", sock, early)
		if err != nil {
			b.Fatal(err)
		}
		if c.Route() != want {
			b.Fatalf("route %v", c.Route())
		}
		if _, err := io.ReadFull(c, resp); err != nil || string(resp) != "OK" {
			b.Fatalf("response %q: %v", resp, err)
		}
		_ = c.Close()
		for len(fb.helloSeen) > 0 {
			<-fb.helloSeen
		}
	}
}
