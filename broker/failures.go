package broker

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/portier/portier/internal/logtail"
	pb "github.com/portier/portier/wire/portierv1"
)

// What a spawn refusal quotes of the backend's output: a short tail, so a
// refusal stays small however much a failing backend printed.
const (
	spawnTailLines = 10
	spawnTailBytes = 1024
)

// spawnRefusal is the refusal for a backend that was started but did not
// come up: it says why, where its output is and how that output ends, so
// the person reading the client's error need not look for the log.
func spawnRefusal(p *proc, why, status, logPath string) *refusal {
	tail, _ := logtail.Lines(logPath, spawnTailLines, spawnTailBytes)
	reason := fmt.Sprintf("%s@%s %s; its output is in %s", p.service, p.version, why, logPath)
	if last := logtail.LastNonEmpty(tail); last != "" {
		reason += fmt.Sprintf(", ending %q", last)
	}
	return &refusal{code: pb.ErrorCode_ERROR_BACKEND_SPAWN_FAILED, reason: reason, retryAfter: time.Second,
		details: map[string]string{"exit_status": status, "stderr_tail": tail, "log": logPath}}
}

// failureLog remembers, per service version, the last failed start, for
// `portier status`: a service that does not come up is otherwise visible
// only to the client it refused and in the broker's log.
type failureLog struct {
	mu   sync.Mutex
	last map[procKey]failureRecord
}

type failureRecord struct {
	at     time.Time
	code   pb.ErrorCode
	reason string
	log    string
}

// note records rf as k's last failure.
func (l *failureLog) note(k procKey, rf *refusal, logPath string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = make(map[procKey]failureRecord)
	}
	l.last[k] = failureRecord{at: time.Now(), code: rf.code, reason: rf.reason, log: logPath}
}

// clear forgets k's failure once a backend of k registered.
func (l *failureLog) clear(k procKey) {
	l.mu.Lock()
	delete(l.last, k)
	l.mu.Unlock()
}

// keys lists the service versions with a failure on record.
func (l *failureLog) keys() []procKey {
	l.mu.Lock()
	defer l.mu.Unlock()
	ks := make([]procKey, 0, len(l.last))
	for k := range l.last {
		ks = append(ks, k)
	}
	return ks
}

// failedStart records a start of p that did not come up (counted against
// the spawn budget when counted is set), and answers the Hellos waiting for
// it with rf.
func (s *supervisor) failedStart(p *proc, rf *refusal, logPath string, counted bool) {
	if counted {
		s.recordFailure(p.procKey)
	}
	s.failed.note(p.procKey, rf, logPath)
	p.markReady(rf)
}

// failureStatus lists the service versions whose last start failed, with
// whether the spawn budget holds their next start back.
func (s *supervisor) failureStatus(now time.Time) []*pb.ServiceFailure {
	s.failed.mu.Lock()
	recs := make(map[procKey]failureRecord, len(s.failed.last))
	for k, r := range s.failed.last {
		recs[k] = r
	}
	s.failed.mu.Unlock()
	out := make([]*pb.ServiceFailure, 0, len(recs))
	s.mu.Lock()
	for k, r := range recs {
		f := &pb.ServiceFailure{
			ServiceName: k.service, Version: k.version, State: "failing", Code: r.code, LastError: r.reason,
			SinceMs: uint64(now.Sub(r.at).Milliseconds()), Log: r.log,
		}
		if retry := s.budgetLocked(k, now); retry > 0 {
			f.State, f.RetryAfterMs = "rate_limited", uint64(retry.Milliseconds())
		}
		f.Failures = uint32(len(s.failures[k]))
		out = append(out, f)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].ServiceName != out[j].ServiceName {
			return out[i].ServiceName < out[j].ServiceName
		}
		return out[i].Version < out[j].Version
	})
	return out
}
