//go:build linux || darwin

package fdpass

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// runHelper is the body of the re-executed test binary. Mode "backend" plays a
// backend: it reads one offer from the control connection on fd 3, adopts
// the socket that came with it, and talks to the client on it.
func runHelper(mode string) error {
	if mode != "backend" {
		return fmt.Errorf("unknown helper mode")
	}
	// The control connection needs a *net.UnixConn (NewReceiver).
	ctlFile := os.NewFile(3, "control")
	ctlConn, err := net.FileConn(ctlFile)
	_ = ctlFile.Close()
	if err != nil {
		return fmt.Errorf("control conn: %w", err)
	}
	ctl := ctlConn.(*net.UnixConn)
	defer ctl.Close()
	deadline := time.Now().Add(30 * time.Second)
	_ = ctl.SetDeadline(deadline)

	r := NewReceiver(ctl, 0)
	defer r.Close()
	m, err := r.Next()
	if err != nil {
		return fmt.Errorf("next: %w", err)
	}
	if m.Err != nil || m.FD < 0 || string(m.Body) != "offer-1" {
		return fmt.Errorf("bad offer: body %q fd %d err %v", m.Body, m.FD, m.Err)
	}
	if !isCloexecErr(m.FD) {
		return fmt.Errorf("received fd %d is not close-on-exec", m.FD)
	}
	c, err := ConnFromFD(m.FD)
	if err != nil {
		return fmt.Errorf("adopt: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)

	// The client wrote "early" before the handoff; it must still be there.
	br := bufio.NewReader(c)
	for _, want := range []string{"early\n", "ping\n"} {
		line, err := br.ReadString('\n')
		if err != nil || line != want {
			return fmt.Errorf("read %q: got %q, %v", want, line, err)
		}
		if _, err := io.WriteString(c, "ack:"+line); err != nil {
			return fmt.Errorf("write: %w", err)
		}
	}
	if err := c.CloseWrite(); err != nil {
		return fmt.Errorf("closewrite: %w", err)
	}
	if _, err := ctl.Write(frame([]byte("done"))); err != nil {
		return fmt.Errorf("ctl write: %w", err)
	}
	return nil
}
