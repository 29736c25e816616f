//go:build linux || darwin

package backend

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/portier/portier/internal/fdpass"

	"github.com/portier/portier/internal/fdcount"
	pb "github.com/portier/portier/wire/portierv1"
	"go.uber.org/goleak"
)

// TestLiveConnectionReports: the backend tells the broker how many
// connections it holds (handed off and direct alike, counted until the
// program closes them): once registered, when it becomes busy, when the
// count changes, when it becomes idle, and again to a broker it
// re-registers with.
func TestLiveConnectionReports(t *testing.T) {
	fdcount.Check(t)
	fb := newFakeBroker(t)
	fb.setEnv()
	l, p := listenUnder(t, fb)
	p.awaitReport(0) // the registration's report

	client, fd := clientPair(t)
	tok := newToken()
	p.offer(handoffOffer(t, 3, tok), fd)
	readReady(t, client, 3, tok)
	handed := accept(t, l)
	p.awaitReport(1)

	d, err := net.Dial("unix", fb.endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	direct := accept(t, l)
	p.awaitReport(2) // a changed count while busy, within countRefresh

	c, ok := direct.(*Conn)
	if !ok {
		t.Fatalf("Accept returned a %T, want a *backend.Conn", direct)
	}
	if _, ok := c.NetConn().(*net.UnixConn); !ok {
		t.Errorf("NetConn is a %T, want the *net.UnixConn", c.NetConn())
	}
	// A handed-off connection is the adopted socket, with the same
	// half-close and raw access through the Conn.
	if _, ok := handed.(*Conn).NetConn().(*fdpass.SocketConn); !ok {
		t.Errorf("handed-off NetConn is a %T, want the *fdpass.SocketConn", handed.(*Conn).NetConn())
	}
	// The wrapper keeps what a connection can do: a half-close reaches
	// the client.
	if err := c.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite through the Conn: %v", err)
	}
	_ = d.SetReadDeadline(time.Now().Add(waitTimeout))
	if n, err := d.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("client read %d, %v after the backend's CloseWrite; want EOF", n, err)
	}

	handed.Close()
	direct.Close()
	direct.Close() // a second Close counts nothing
	p.awaitReport(0)
	if n := l.LiveConnections(); n != 0 {
		t.Errorf("LiveConnections = %d, want 0", n)
	}

	// A broker that comes back hears the count at once.
	d2, err := net.Dial("unix", fb.endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	busy := accept(t, l)
	p.awaitReport(1)
	p.conn.Close()
	p2 := fb.accept()
	p2.reply(&pb.RegisterReply{Accepted: true})
	p2.awaitReport(1)
	busy.Close()
	p2.awaitReport(0)

	l.Close()
	p2.expectUnregister()
	goleak.VerifyNone(t)
}

// TestReportsDebounced: a stream of short connections, each making the
// backend busy and then idle, costs at most one report per reportGap, not
// a frame per connection, and the last report says idle.
func TestReportsDebounced(t *testing.T) {
	fdcount.Check(t)
	fb := newFakeBroker(t)
	fb.setEnv()
	l, p := listenUnder(t, fb)
	p.awaitReport(0)
	p.reports = nil

	const conns = 200
	start := time.Now()
	for range conns {
		d, err := net.Dial("unix", fb.endpoint)
		if err != nil {
			t.Fatal(err)
		}
		accept(t, l).Close()
		d.Close()
	}
	// The stream is over: the next report says idle.
	p.awaitReport(0)
	elapsed := time.Since(start)
	if max := int(elapsed/reportGap) + 2; len(p.reports) > max {
		t.Errorf("%d reports for %d connections in %s; want at most one per %s (%d)", len(p.reports), conns, elapsed, reportGap, max)
	}
	if len(p.reports) >= conns {
		t.Errorf("%d reports for %d connections: a frame per connection", len(p.reports), conns)
	}
	l.Close()
	p.expectUnregister()
	goleak.VerifyNone(t)
}

// TestShutdownStandalone: without a broker, Shutdown stops accepting and
// waits for the connections in progress, as under a broker.
func TestShutdownStandalone(t *testing.T) {
	fdcount.Check(t)
	dir := t.TempDir()
	l, err := Listen(context.Background(), Address(dir+"/s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := net.Dial("unix", dir+"/s.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	c := accept(t, l)
	shut := make(chan error, 1)
	go func() { shut <- l.Shutdown(context.Background()) }()
	expectAcceptClosed(t, l)
	exchange(t, d, c) // still served while Shutdown waits
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a connection open", err)
	default:
	}
	c.Close()
	select {
	case err := <-shut:
		if err != nil {
			t.Errorf("Shutdown = %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Shutdown did not return after the last connection closed")
	}
	if err := l.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown = %v", err)
	}
	if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Errorf("Close after Shutdown = %v", err)
	}
	goleak.VerifyNone(t)
}
