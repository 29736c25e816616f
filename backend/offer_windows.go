//go:build windows

package backend

import (
	"errors"
	"net"
	"time"
)

// errNoAdoption: handed-off named-pipe handles are not adopted on Windows
// yet. The backend registers without the handoff capability, so a broker
// sends no offers; one that does gets a rejection.
var errNoAdoption = errors.New("handoff is not supported by this backend on windows")

// pipeArrival is the handle an offer names in handle_value. It is never
// adopted, and never closed either: without the capability no broker
// duplicated a handle into this process, so the value names nothing of ours.
type pipeArrival struct{}

func (pipeArrival) problem() error           { return errNoAdoption }
func (pipeArrival) adopt() (net.Conn, error) { return nil, errNoAdoption }
func (pipeArrival) discard()                 {}

// writeReady writes the ready event on an adopted connection under a
// deadline.
func writeReady(conn net.Conn, ready []byte) error {
	_ = conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := conn.Write(ready); err != nil {
		return err
	}
	return conn.SetWriteDeadline(time.Time{})
}
