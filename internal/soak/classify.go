package soak

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/portier/portier/client"
)

// kind is what became of one attempt.
type kind uint8

const (
	kindCorrect kind = iota
	kindCorrupt
	kindHung
	kindError
	// kindInterrupted: a long-lived connection the soak's end closed early.
	kindInterrupted
)

// Error keys of Counts.Errors. Refusals are "refused: <CODE>" and protocol
// errors "ProtocolError: <op> (<cause>)".
const (
	// KeyBrokerListening is ErrBrokerUnavailable while a broker listened.
	KeyBrokerListening = "ErrBrokerUnavailable (broker listening)"
	// KeyBrokerDown is ErrBrokerUnavailable while no broker listened.
	KeyBrokerDown = "ErrBrokerUnavailable (no broker listening)"
	// KeyBackendUnavailable is client.ErrBackendUnavailable, from Dial or
	// from the first use of the connection.
	KeyBackendUnavailable = "ErrBackendUnavailable"
	// KeySpawnFailed is the BACKEND_SPAWN_FAILED refusal.
	KeySpawnFailed = "refused: BACKEND_SPAWN_FAILED"
	// KeyCutKilled is a connection that ended mid-request while its backend
	// was being killed.
	KeyCutKilled = "cut (backend killed)"
	// KeyCutUnexplained is a connection that ended mid-request while nobody
	// killed its backend.
	KeyCutUnexplained = "cut (no kill)"
	// KeyOther is every other error.
	KeyOther = "other"

	// keyBrokerUnavailable and keyCut are judged against the timeline
	// (judge) before they are counted.
	keyBrokerUnavailable = "ErrBrokerUnavailable"
	keyCut               = "cut"
)

// outcome is one attempt, classified.
type outcome struct {
	kind   kind
	key    string // for kindError
	detail string // the error or the corruption, for samples
	route  client.Route
	start  time.Time
	end    time.Time
}

// classify names err, which ended an attempt that began elapsed ago under
// the bound hungAfter. An attempt that ran into its own deadline is hung;
// every other timeout is the client's own (for example its handshake
// timeout) and is classified by its type like any other error.
func classify(err error, elapsed, hungAfter time.Duration) (kind, string) {
	if isTimeout(err) && elapsed >= hungAfter*9/10 {
		return kindHung, ""
	}
	var refused *client.RefusedError
	var perr *client.ProtocolError
	switch {
	case errors.Is(err, client.ErrBrokerUnavailable):
		return kindError, keyBrokerUnavailable
	case errors.Is(err, client.ErrBackendUnavailable):
		return kindError, KeyBackendUnavailable
	case errors.As(err, &refused):
		return kindError, "refused: " + strings.TrimPrefix(refused.Code.String(), "ERROR_")
	case errors.As(err, &perr):
		return kindError, "ProtocolError: " + perr.Op + causeSuffix(perr.Err)
	case isCut(err):
		return kindError, keyCut
	}
	return kindError, KeyOther
}

// causeSuffix names the common causes of a protocol error, so that a
// timeout and an EOF are counted apart.
func causeSuffix(err error) string {
	switch {
	case isTimeout(err):
		return " (timeout)"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return " (EOF)"
	case errors.Is(err, syscall.ECONNRESET):
		return " (reset)"
	}
	return ""
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isCut reports an established connection that ended: EOF, reset, broken
// pipe.
func isCut(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
