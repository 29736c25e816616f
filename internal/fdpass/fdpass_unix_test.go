//go:build linux || darwin

package fdpass

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portier/portier/internal/fdcount"
	"golang.org/x/sys/unix"
)

// testDeadline bounds every blocking step of a test; tests never rely on it
// firing (nothing waits forever, not even a broken test).
func testDeadline() time.Time { return time.Now().Add(30 * time.Second) }

func isCloexecErr(fd int) bool {
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil && flags&unix.FD_CLOEXEC != 0
}

// connectedPair returns a client and server *net.UnixConn over a real
// listening socket, so both ends have addresses as in production.
func connectedPair(t *testing.T) (client, server *net.UnixConn) {
	t.Helper()
	addr := &net.UnixAddr{Name: filepath.Join(t.TempDir(), "s.sock"), Net: "unix"}
	ln, err := net.ListenUnix("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.DialUnix("unix", nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	return client, server
}

// TestHandoffAcrossProcesses passes a connected socket to a real child
// process (this test binary re-executed), closes the sender's copy right
// after sendmsg, and checks that the child serves the original client on it,
// including bytes the client wrote before the handoff.
func TestHandoffAcrossProcesses(t *testing.T) {
	fdcount.Check(t)
	client, server := connectedPair(t)
	deadline := testDeadline()
	_ = client.SetDeadline(deadline)

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.CloseOnExec(fds[0])
	unix.CloseOnExec(fds[1])
	ctl := unixConnFromFD(t, fds[0])
	defer ctl.Close()
	childEnd := os.NewFile(uintptr(fds[1]), "child-ctl")

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=backend")
	cmd.ExtraFiles = []*os.File{childEnd} // fd 3 in the child
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = childEnd.Close()
	waited := false
	defer func() {
		if !waited {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()

	// Early data: written before the backend holds the socket.
	if _, err := io.WriteString(client, "early\n"); err != nil {
		t.Fatal(err)
	}
	var fdSent bool
	err = WithFD(server, func(fd int) error {
		var err error
		fdSent, err = SendWithFD(ctl, frame([]byte("offer-1")), fd, deadline)
		return err
	})
	if err != nil || !fdSent {
		t.Fatalf("SendWithFD: sent=%v err=%v", fdSent, err)
	}
	// The broker's copy goes away while the descriptor is still in flight.
	if err := server.Close(); err != nil {
		t.Fatal(err)
	}

	br := bufio.NewReader(client)
	expectLine := func(want string) {
		t.Helper()
		got, err := br.ReadString('\n')
		if err != nil || got != want {
			t.Fatalf("client read: got %q, %v; want %q (child: %s)", got, err, want, stderr.String())
		}
	}
	expectLine("ack:early\n")
	if _, err := io.WriteString(client, "ping\n"); err != nil {
		t.Fatal(err)
	}
	expectLine("ack:ping\n")
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after CloseWrite: %q, %v", rest, err)
	}

	r := NewReceiver(ctl, 0)
	defer r.Close()
	_ = ctl.SetReadDeadline(deadline)
	m, err := r.Next()
	if err != nil || string(m.Body) != "done" || m.FD != -1 || m.Err != nil {
		t.Fatalf("control reply: %+v, %v", m, err)
	}
	waited = true
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v\n%s", err, stderr.String())
	}
}

// TestFDBoundToItsFrame sends fd-less frames and fd frames back to back
// (several fd-less frames in one write, so the kernel has them queued in
// front of the descriptor's segment) and checks every descriptor lands on
// its own frame, with bodies of assorted sizes including ones that make the
// Receiver grow its buffer.
func TestFDBoundToItsFrame(t *testing.T) {
	fdcount.Check(t)
	a, b := socketPair(t, unix.SOCK_STREAM)
	files := pipeFDs(t, 3)

	type step struct {
		body []byte
		fd   int // index into files, or -1
	}
	big := bytes.Repeat([]byte("x"), 3*initialBodyCap+17)
	steps := []step{
		{[]byte("one"), -1}, {nil, -1}, {[]byte("three"), -1},
		{[]byte("offer-A"), 0},
		{[]byte("after"), -1},
		{[]byte("offer-B"), 1}, // two fd frames back to back
		{nil, 2},               // empty body, with descriptor
		{big, -1},
		{[]byte("tail"), -1},
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the sender may block on a full socket buffer
		defer wg.Done()
		var batch []byte
		flush := func() {
			if len(batch) > 0 {
				if _, err := a.Write(batch); err != nil {
					t.Errorf("write: %v", err)
				}
				batch = nil
			}
		}
		for _, s := range steps {
			if s.fd < 0 {
				batch = append(batch, frame(s.body)...)
				continue
			}
			flush()
			if sent, err := SendWithFD(a, frame(s.body), files[s.fd], testDeadline()); err != nil || !sent {
				t.Errorf("SendWithFD: %v %v", sent, err)
			}
		}
		flush()
	}()

	r := NewReceiver(b, 0)
	defer r.Close()
	_ = b.SetReadDeadline(testDeadline())
	for i, s := range steps {
		m, err := r.Next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(m.Body, s.body) || m.Err != nil {
			t.Fatalf("frame %d: body %d bytes (want %d), err %v", i, len(m.Body), len(s.body), m.Err)
		}
		switch {
		case s.fd < 0 && m.FD != -1:
			t.Errorf("frame %d: unexpected fd %d", i, m.FD)
			closeFD(m.FD)
		case s.fd >= 0 && m.FD < 0:
			t.Errorf("frame %d: descriptor missing", i)
		case s.fd >= 0:
			if !sameFile(t, m.FD, files[s.fd]) {
				t.Errorf("frame %d: got a different file", i)
			}
			if !isCloexec(t, m.FD) {
				t.Errorf("frame %d: received fd not close-on-exec", i)
			}
			closeFD(m.FD)
		}
	}
	wg.Wait()
}

// TestKernelGluesFDSegment records what the kernel does without the
// Receiver's bounded reads: one large recvmsg after three fd-less writes and
// one fd-carrying sendmsg. On Linux 6.18 it returns all four frames with the
// descriptor, so a reader that reads ahead cannot tell which frame the
// descriptor belongs to. The test only logs; TestFDBoundToItsFrame is what
// must hold on every kernel.
func TestKernelGluesFDSegment(t *testing.T) {
	fdcount.Check(t)
	a, b := socketPair(t, unix.SOCK_STREAM)
	file := pipeFDs(t, 1)[0]
	for i := range 3 {
		if _, err := a.Write(frame([]byte{byte(i)})); err != nil {
			t.Fatal(err)
		}
	}
	rawSend(t, a, frame([]byte("offer")), file)
	_ = WithFD(b, func(s int) error {
		buf := make([]byte, 4096)
		oob := make([]byte, unix.CmsgSpace(4*4))
		n, oobn, _, _, err := unix.Recvmsg(s, buf, oob, unix.MSG_DONTWAIT)
		if err != nil {
			t.Fatalf("recvmsg: %v", err)
		}
		fds := parseRights(oob[:oobn])
		defer closeFDs(fds)
		for _, fd := range fds {
			unix.CloseOnExec(fd)
		}
		t.Logf("one recvmsg returned %d bytes (%d before the descriptor's frame) and %d fds", n, n-len(frame([]byte("offer"))), len(fds))
		return nil
	})
}

func TestControlTruncated(t *testing.T) {
	fdcount.Check(t)
	a, b := socketPair(t, unix.SOCK_STREAM)
	files := pipeFDs(t, 8) // twice what the control buffer holds
	rawSend(t, a, frame([]byte("offer")), files...)
	if _, err := a.Write(frame([]byte("next"))); err != nil {
		t.Fatal(err)
	}
	r := NewReceiver(b, 0)
	defer r.Close()
	_ = b.SetReadDeadline(testDeadline())
	m, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(m.Err, ErrControlTruncated) || m.FD != -1 || string(m.Body) != "offer" {
		t.Fatalf("got %+v, want ErrControlTruncated with body", m)
	}
	// The stream stays aligned and usable.
	m, err = r.Next()
	if err != nil || string(m.Body) != "next" || m.FD != -1 || m.Err != nil {
		t.Fatalf("frame after truncation: %+v, %v", m, err)
	}
}

func TestTooManyFDs(t *testing.T) {
	for _, n := range []int{2, maxFDsPerRead} {
		fdcount.Check(t)
		a, b := socketPair(t, unix.SOCK_STREAM)
		files := pipeFDs(t, n)
		rawSend(t, a, frame([]byte("offer")), files...)
		r := NewReceiver(b, 0)
		_ = b.SetReadDeadline(testDeadline())
		m, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(m.Err, ErrTooManyFDs) || m.FD != -1 || string(m.Body) != "offer" {
			t.Fatalf("%d fds: got %+v, want ErrTooManyFDs", n, m)
		}
		_ = r.Close()
	}
}

// TestFDMisaligned: a descriptor whose sendmsg starts in the middle of a
// frame (after the Receiver consumed that frame's first byte) is dropped and
// the frame fails, whether it comes with part of the header or with the body.
//
// Only this case is detectable: if the misplaced sendmsg arrives while the
// frame's first byte is still unread, the kernel may glue both into one read
// (Linux does), and the Receiver cannot tell the difference from a
// well-formed offer. SendWithFD never produces either case.
func TestFDMisaligned(t *testing.T) {
	fdcount.Check(t)
	for _, split := range []int{1, 2, headerLen, headerLen + 3} {
		a, b := socketPair(t, unix.SOCK_STREAM)
		file := pipeFDs(t, 1)[0]
		f := frame([]byte("offer-body"))
		r := NewReceiver(b, 0)
		if _, err := a.Write(f[:split]); err != nil {
			t.Fatal(err)
		}
		// Make the Receiver consume the first part before the fd arrives.
		_ = b.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if _, err := r.Next(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("want timeout, got %v", err)
		}
		_ = b.SetReadDeadline(testDeadline())
		rawSend(t, a, f[split:], file)
		m, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(m.Err, ErrFDMisaligned) || m.FD != -1 || string(m.Body) != "offer-body" {
			t.Fatalf("split %d: got %+v, want ErrFDMisaligned", split, m)
		}
		_ = r.Close()
	}
}

// TestNextResumesAfterDeadline: a read deadline in the middle of a frame is
// not fatal, and the descriptor that came with the frame's first bytes stays
// bound to it.
func TestNextResumesAfterDeadline(t *testing.T) {
	fdcount.Check(t)
	a, b := socketPair(t, unix.SOCK_STREAM)
	file := pipeFDs(t, 1)[0]
	f := frame([]byte("slow offer"))
	rawSend(t, a, f[:3], file)
	r := NewReceiver(b, 0)
	defer r.Close()
	_ = b.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := r.Next(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("want deadline error, got %v", err)
	}
	if _, err := a.Write(f[3:]); err != nil {
		t.Fatal(err)
	}
	_ = b.SetReadDeadline(testDeadline())
	m, err := r.Next()
	if err != nil || string(m.Body) != "slow offer" || m.Err != nil || m.FD < 0 {
		t.Fatalf("got %+v, %v", m, err)
	}
	if !sameFile(t, m.FD, file) {
		t.Error("wrong file")
	}
	closeFD(m.FD)
}

// TestOnIdle: the idle hook runs when Next has read everything sent so far
// and is about to wait, and only then: frames already in the socket are
// read without it, and a frame that arrives while it waits is read next.
func TestOnIdle(t *testing.T) {
	a, b := socketPair(t, unix.SOCK_STREAM)
	if _, err := a.Write(append(frame([]byte("one")), frame([]byte("two"))...)); err != nil {
		t.Fatal(err)
	}
	r := NewReceiver(b, 0)
	defer r.Close()
	idle := make(chan struct{}, 8)
	r.OnIdle(func() { idle <- struct{}{} })
	_ = b.SetReadDeadline(testDeadline())
	for _, want := range []string{"one", "two"} {
		m, err := r.Next()
		if err != nil || string(m.Body) != want {
			t.Fatalf("got %+v, %v; want %q", m, err, want)
		}
	}
	if n := len(idle); n != 0 {
		t.Fatalf("the idle hook ran %d times while frames were queued", n)
	}
	got := make(chan Message, 1)
	go func() {
		m, _ := r.Next()
		got <- m
	}()
	select {
	case <-idle:
	case <-time.After(10 * time.Second):
		t.Fatal("the idle hook did not run before Next waited")
	}
	if _, err := a.Write(frame([]byte("three"))); err != nil {
		t.Fatal(err)
	}
	if m := <-got; string(m.Body) != "three" {
		t.Fatalf("got %+v after the wait, want \"three\"", m)
	}
}

// TestCloseReleasesHeldFD: a descriptor for a frame that never completes is
// closed by Close, and Next reports the Receiver closed.
func TestCloseReleasesHeldFD(t *testing.T) {
	fdcount.Check(t)
	a, b := socketPair(t, unix.SOCK_STREAM)
	file := pipeFDs(t, 1)[0]
	// A whole frame, then the first bytes of an fd frame in one read.
	if _, err := a.Write(frame([]byte("first"))); err != nil {
		t.Fatal(err)
	}
	rawSend(t, a, frame([]byte("never finished"))[:4], file)
	r := NewReceiver(b, 0)
	_ = b.SetReadDeadline(testDeadline())
	if m, err := r.Next(); err != nil || string(m.Body) != "first" {
		t.Fatalf("first: %+v %v", m, err)
	}
	_ = b.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := r.Next(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("want timeout, got %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestFramingErrorsAreFatal(t *testing.T) {
	cases := []struct {
		name    string
		maxBody int
		data    []byte
		want    error
	}{
		{"version", 0, []byte{0x02, 0, 0, 0, 0}, ErrBadFramingVersion},
		{"oversize default", 0, []byte{1, 0x01, 0x00, 0x00, 0x01}, ErrFrameTooLarge}, // 16 MiB + 1
		{"oversize custom", 1024, frame(make([]byte, 1025)), ErrFrameTooLarge},
		{"max custom ok then bad", 1024, append(frame(make([]byte, 1024)), 0x00), ErrBadFramingVersion},
		{"eof mid header", 0, []byte{1, 0}, io.ErrUnexpectedEOF},
		{"eof mid body", 0, frame([]byte("abc"))[:6], io.ErrUnexpectedEOF},
		{"eof at boundary", 0, frame([]byte("abc")), io.EOF},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fdcount.Check(t)
			a, b := socketPair(t, unix.SOCK_STREAM)
			// A descriptor rides with the bad frame: it must be released.
			file := pipeFDs(t, 1)[0]
			rawSend(t, a, tc.data, file)
			_ = a.CloseWrite()
			r := NewReceiver(b, tc.maxBody)
			defer r.Close()
			_ = b.SetReadDeadline(testDeadline())
			var err error
			for range 3 {
				var m Message
				if m, err = r.Next(); err != nil {
					break
				}
				closeFD(m.FD)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if _, err2 := r.Next(); !errors.Is(err2, tc.want) {
				t.Fatalf("not sticky: %v", err2)
			}
		})
	}
}

// TestCloseDuringNext: Close from another goroutine while Next is blocked
// with a descriptor held for an incomplete frame; whatever the interleaving,
// Next ends with an error once the connection is closed, and nothing leaks.
func TestCloseDuringNext(t *testing.T) {
	fdcount.Check(t)
	for range 20 {
		a, b := socketPair(t, unix.SOCK_STREAM)
		file := pipeFDs(t, 1)[0]
		r := NewReceiver(b, 0)
		_ = b.SetReadDeadline(testDeadline())
		done := make(chan error, 1)
		go func() {
			m, err := r.Next()
			closeFD(m.FD)
			done <- err
		}()
		rawSend(t, a, frame([]byte("incomplete"))[:7], file)
		_ = r.Close()
		_ = b.Close()
		if err := <-done; err == nil {
			t.Fatal("Next returned a frame that never completed")
		}
	}
}

func TestNextOnClosedConn(t *testing.T) {
	fdcount.Check(t)
	_, b := socketPair(t, unix.SOCK_STREAM)
	r := NewReceiver(b, 0)
	defer r.Close()
	_ = b.Close()
	for range 2 {
		m, err := r.Next()
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("got %v, want net.ErrClosed", err)
		}
		if m.FD != -1 {
			t.Fatalf("error result carries FD %d, want -1", m.FD)
		}
	}
}

func TestSendWithFDRejectsNonFrames(t *testing.T) {
	fdcount.Check(t)
	a, _ := socketPair(t, unix.SOCK_STREAM)
	file := pipeFDs(t, 1)[0]
	big := []byte{1, 0x01, 0x00, 0x00, 0x01}
	for _, msg := range [][]byte{nil, {1, 0, 0}, {2, 0, 0, 0, 0}, {1, 3, 0, 0, 0, 'a'}, append(frame([]byte("a")), 0), big} {
		if sent, err := SendWithFD(a, msg, file, testDeadline()); !errors.Is(err, ErrInvalidFrame) || sent {
			t.Errorf("%x: sent=%v err=%v", msg, sent, err)
		}
	}
	if sent, err := SendWithFD(a, frame(nil), -1, testDeadline()); !errors.Is(err, ErrBadFD) || sent {
		t.Errorf("fd -1: sent=%v err=%v", sent, err)
	}
}

// TestSendWithFDDeadline: with the peer's buffer full, SendWithFD waits in the
// poller until its deadline and reports that the descriptor was not sent.
func TestSendWithFDDeadline(t *testing.T) {
	fdcount.Check(t)
	a, _ := socketPair(t, unix.SOCK_STREAM)
	file := pipeFDs(t, 1)[0]
	fill := make([]byte, 64<<10)
	_ = WithFD(a, func(s int) error {
		for {
			if _, err := unix.Write(s, fill); err != nil {
				return nil // EAGAIN: full
			}
		}
	})
	for _, d := range []time.Time{time.Now().Add(-time.Second), time.Now().Add(20 * time.Millisecond)} {
		sent, err := SendWithFD(a, frame([]byte("offer")), file, d)
		if sent || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("sent=%v err=%v, want deadline", sent, err)
		}
	}
}

func TestSendWithFDPeerGone(t *testing.T) {
	fdcount.Check(t)
	a, b := socketPair(t, unix.SOCK_STREAM)
	file := pipeFDs(t, 1)[0]
	_ = b.Close()
	sent, err := SendWithFD(a, frame([]byte("offer")), file, testDeadline())
	if sent || err == nil {
		t.Fatalf("sent=%v err=%v, want failure", sent, err)
	}
}

// TestSendWithFDShortWrite sends a frame much larger than the socket buffer:
// the first sendmsg is short, the rest follows without the descriptor, and
// the receiver gets exactly one descriptor with the intact frame.
func TestSendWithFDShortWrite(t *testing.T) {
	fdcount.Check(t)
	a, b := socketPair(t, unix.SOCK_STREAM)
	_ = a.SetWriteBuffer(16 << 10)
	file := pipeFDs(t, 1)[0]
	body := make([]byte, 4<<20)
	for i := range body {
		body[i] = byte(i * 7)
	}
	var (
		m    Message
		rerr error
		wg   sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := NewReceiver(b, 0)
		defer r.Close()
		_ = b.SetReadDeadline(testDeadline())
		m, rerr = r.Next()
	}()
	sent, err := SendWithFD(a, frame(body), file, testDeadline())
	wg.Wait()
	if err != nil || !sent {
		t.Fatalf("SendWithFD: %v %v", sent, err)
	}
	if rerr != nil || m.Err != nil || m.FD < 0 || !bytes.Equal(m.Body, body) {
		t.Fatalf("receive: fd %d err %v/%v len %d", m.FD, rerr, m.Err, len(m.Body))
	}
	closeFD(m.FD)
}

func TestConnFromFD(t *testing.T) {
	fdcount.Check(t)
	client, server := connectedPair(t)
	c, err := ConnFromFD(dupFD(t, server))
	if err != nil {
		t.Fatal(err)
	}
	_ = server.Close() // the adopted descriptor is the only one left
	if c.LocalAddr().String() != client.RemoteAddr().String() || c.LocalAddr().Network() != "unix" {
		t.Errorf("addresses: local %v, client's remote %v", c.LocalAddr(), client.RemoteAddr())
	}
	if c.RemoteAddr().String() != client.LocalAddr().String() || c.RemoteAddr().Network() != "unix" {
		t.Errorf("addresses: remote %v, client's local %v", c.RemoteAddr(), client.LocalAddr())
	}
	_ = client.SetDeadline(testDeadline())
	_ = c.SetDeadline(testDeadline())
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q, %v", buf, err)
	}
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(client); err != nil || string(got) != "hi" {
		t.Fatalf("client got %q, %v", got, err)
	}

	// A deadline is a net.Error whose Timeout is true, as on a *net.UnixConn.
	_ = c.SetReadDeadline(time.Now().Add(-time.Second))
	_, err = c.Read(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read past the deadline: %v (%T), want a timeout net.Error", err, err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" || oe.Net != "unix" {
		t.Errorf("read past the deadline: %#v, want a *net.OpError for read on unix", err)
	}
	_ = c.SetReadDeadline(time.Time{})

	// The client's close is EOF; CloseRead works; after Close, errors are
	// net.ErrClosed.
	_ = client.Close()
	if n, err := c.Read(buf); n != 0 || err != io.EOF {
		t.Errorf("read after the peer closed: %d, %v; want io.EOF", n, err)
	}
	if err := c.CloseRead(); err != nil {
		t.Errorf("CloseRead: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"Close":       c.Close(),
		"CloseWrite":  c.CloseWrite(),
		"SetDeadline": c.SetDeadline(time.Time{}),
		"Read":        func() error { _, err := c.Read(buf); return err }(),
		"Write":       func() error { _, err := c.Write(buf); return err }(),
	} {
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s after Close: %v, want net.ErrClosed", name, err)
		}
	}
}

// TestConnFromFDUnblocksBlockingSocket: a descriptor sent in blocking mode
// joins the poller (deadlines work), as it did with net.FileConn.
func TestConnFromFDUnblocksBlockingSocket(t *testing.T) {
	fdcount.Check(t)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.CloseOnExec(fds[0])
	unix.CloseOnExec(fds[1])
	defer unix.Close(fds[1])
	c, err := ConnFromFD(fds[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := WithFD(c, func(fd int) error {
		fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		if err == nil && fl&unix.O_NONBLOCK == 0 {
			t.Error("adopted socket is still blocking")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// A file outside the poller refuses deadlines (os.ErrNoDeadline).
	if err := c.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatalf("deadline on an adopted blocking socket: %v", err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read: %v, want the deadline", err)
	}
}

// dupFD returns a close-on-exec duplicate of c's descriptor.
func dupFD(t testing.TB, c syscall.Conn) int {
	t.Helper()
	var dup int
	if err := WithFD(c, func(fd int) error {
		var err error
		dup, err = unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return dup
}

func TestConnFromFDRefusesOthers(t *testing.T) {
	fdcount.Check(t)
	// Datagram socket: a *net.UnixConn, but not a stream.
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	if _, err := ConnFromFD(fds[0]); !errors.Is(err, ErrNotUnixStream) {
		t.Errorf("dgram: %v", err)
	}
	// TCP socket.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	var tfd int
	_ = WithFD(tc.(*net.TCPConn), func(fd int) error {
		tfd, err = unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		return err
	})
	if _, err := ConnFromFD(tfd); !errors.Is(err, ErrNotUnixStream) {
		t.Errorf("tcp: %v", err)
	}
	// Not a socket at all.
	var p [2]int
	if err := unix.Pipe(p[:]); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[1])
	if _, err := ConnFromFD(p[0]); err == nil {
		t.Error("pipe accepted")
	}
	if _, err := ConnFromFD(-1); !errors.Is(err, ErrBadFD) {
		t.Errorf("-1: %v", err)
	}
	// Every descriptor handed to ConnFromFD was closed (checkFDs).
}

func TestWithFD(t *testing.T) {
	a, _ := socketPair(t, unix.SOCK_STREAM)
	sentinel := errors.New("from fn")
	if err := WithFD(a, func(fd int) error {
		if fd < 0 {
			t.Errorf("fd %d", fd)
		}
		return sentinel
	}); !errors.Is(err, sentinel) {
		t.Errorf("got %v", err)
	}
	_ = a.Close()
	if err := WithFD(a, func(int) error { t.Error("fn ran on a closed conn"); return nil }); err == nil {
		t.Error("no error on closed conn")
	}
}

func TestParseRights(t *testing.T) {
	one := unix.UnixRights(7)
	two := append(unix.UnixRights(8, 9), unix.UnixRights(10)...)
	cases := []struct {
		oob  []byte
		want []int
	}{
		{nil, nil},
		{one, []int{7}},
		{two, []int{8, 9, 10}},
		{one[:unix.CmsgLen(0)+3], nil},                  // no whole descriptor left
		{one[:unix.CmsgLen(0)-1], nil},                  // not even a header
		{append(unix.UnixRights(3), 1, 2, 3), []int{3}}, // trailing junk
	}
	for i, tc := range cases {
		got := parseRights(tc.oob)
		if len(got) != len(tc.want) {
			t.Errorf("%d: got %v want %v", i, got, tc.want)
			continue
		}
		for j := range got {
			if got[j] != tc.want[j] {
				t.Errorf("%d: got %v want %v", i, got, tc.want)
			}
		}
	}
}
