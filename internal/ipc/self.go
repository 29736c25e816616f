package ipc

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Self names which of this process's user ids the peer of a connection must
// run as to count as "me". Every "is the peer me?" check in portier goes
// through CheckPeer with one of these rules.
type Self uint8

const (
	// RealUID is the rule of servers: the broker and backends compare the
	// peer's uid with their real uid, the user who started them. A setuid
	// bit on their executable changes the effective uid but not whom they
	// serve, so it must not let that binary's owner in.
	RealUID Self = iota + 1
	// EffectiveUID is the rule of clients: client.Dial and the portier CLI
	// compare the broker's uid with their effective uid, because that is the
	// identity their own files and checks use (the default socket path
	// /tmp/portier-$EUID, the private-directory ownership check): the broker
	// they talk to must run as the same user those belong to.
	EffectiveUID
)

// String returns "real" or "effective".
func (s Self) String() string {
	switch s {
	case RealUID:
		return "real"
	case EffectiveUID:
		return "effective"
	}
	return fmt.Sprintf("Self(%d)", uint8(s))
}

// ErrForeignPeer is matched by *ForeignPeerError.
var ErrForeignPeer = errors.New("ipc: peer runs as another user")

// ForeignPeerError reports that the peer of a connection runs as another
// user than this process (under the rule Self).
type ForeignPeerError struct {
	Peer Cred // what the kernel reported about the peer
	Self Self // the rule applied
	Want int  // this process's uid under that rule
}

func (e *ForeignPeerError) Error() string {
	return fmt.Sprintf("ipc: peer (pid %d) runs as uid %d, not as this process's %s uid %d",
		e.Peer.PID, e.Peer.UID, e.Self, e.Want)
}

// Is matches ErrForeignPeer.
func (e *ForeignPeerError) Is(target error) bool { return target == ErrForeignPeer }

// CheckPeer answers "is the peer of c me?". It returns the kernel-reported
// credentials of c's peer and nil when the peer runs as this process's user
// under rule self; an error matching ErrForeignPeer when it runs as another
// user (on Unix a *ForeignPeerError); and another error when the kernel
// cannot tell, which callers treat as a refusal too: an unknown peer is
// never trusted.
//
// Call it before reading any byte, so nothing the peer sends influences the
// decision. It takes any net.Conn so that each platform's endpoint fits
// behind it: a Unix domain socket on Unix (SO_PEERCRED, LOCAL_PEERCRED); on
// Windows either end of a named pipe, whose peer process's token user SID
// is compared with this process's.
func CheckPeer(c net.Conn, self Self) (Cred, error) {
	if self != RealUID && self != EffectiveUID {
		return Cred{}, fmt.Errorf("ipc: CheckPeer: unknown rule %s", self)
	}
	return checkPeer(c, self)
}

// peerLogInterval bounds how often a PeerGuard logs a refusal.
const peerLogInterval = 10 * time.Second

// PeerGuard is the servers' side of CheckPeer (rule RealUID): the broker and
// backends ask it about every connection they accept. It logs the
// connections it refuses at most once per 10 s, counting those it left out,
// so that a flood of foreign connections cannot flood the log. A PeerGuard is
// safe for concurrent use.
//
// Unlike CheckPeer it reads the process's real uid once, when it is made,
// rather than with a syscall per connection: a server serves the user who
// started it. A process that changes its uids makes a new guard.
type PeerGuard struct {
	log *slog.Logger
	uid int // the real uid when the guard was made

	mu         sync.Mutex
	logged     time.Time // when the last record was written
	suppressed int       // refusals since then that were not logged
}

// NewPeerGuard returns a guard that logs to log (slog.Default() when nil).
func NewPeerGuard(log *slog.Logger) *PeerGuard {
	if log == nil {
		log = slog.Default()
	}
	return &PeerGuard{log: log, uid: selfUID(RealUID)}
}

// Admit reports whether c's peer runs as this process's real user, with the
// peer's credentials. A refused connection is left to the caller to close.
func (g *PeerGuard) Admit(c net.Conn) (Cred, bool) {
	cred, err := checkPeerAs(c, RealUID, g.uid)
	if err != nil {
		g.refused(cred, err)
		return cred, false
	}
	return cred, true
}

// refused logs one refusal, or counts it when a record was written less
// than peerLogInterval ago.
func (g *PeerGuard) refused(cred Cred, err error) {
	now := time.Now()
	g.mu.Lock()
	if !g.logged.IsZero() && now.Sub(g.logged) < peerLogInterval {
		g.suppressed++
		g.mu.Unlock()
		return
	}
	more := g.suppressed
	g.logged, g.suppressed = now, 0
	g.mu.Unlock()
	attrs := []any{"err", err}
	var fe *ForeignPeerError
	if errors.As(err, &fe) {
		attrs = []any{"peer_uid", fe.Peer.UID, "peer_pid", fe.Peer.PID, "uid", fe.Want}
	}
	if more > 0 {
		attrs = append(attrs, "more_refused", more, "since", peerLogInterval)
	}
	g.log.Warn("refused a connection whose peer is not this user", attrs...)
}
