package soak

import (
	"maps"
	"sync"
	"time"
)

// killGrace is how long after a SIGKILL an attempt that has just begun may
// still meet the dying backend: kill(2) returns before the process has
// closed its sockets, so a connection made in that gap is cut by the kill,
// not by the broker. It is generous on a loaded machine and still far
// below the time between kills.
const killGrace = 250 * time.Millisecond

// maxSamples is how many error messages Counts keeps per key.
const maxSamples = 3

// timeline records the chaos: the windows in which no broker listened and
// the times backends were killed. Attempts are judged against it when they
// end.
type timeline struct {
	mu    sync.Mutex
	downs []window
	kills []time.Time
}

// window is a time without a listening broker; a zero end means it lasts.
type window struct{ start, end time.Time }

// brokerDown opens a window at t (just before the broker is signalled).
func (tl *timeline) brokerDown(t time.Time) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.downs = append(tl.downs, window{start: t})
}

// brokerUp closes the open window at t (once a new broker answered).
func (tl *timeline) brokerUp(t time.Time) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if n := len(tl.downs); n > 0 && tl.downs[n-1].end.IsZero() {
		tl.downs[n-1].end = t
	}
}

// kill records a SIGKILL of a backend at t.
func (tl *timeline) kill(t time.Time) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.kills = append(tl.kills, t)
}

// downDuring reports whether [s, e] overlaps a window without a broker.
// Windows open before the signal is sent and close only after a new broker
// answered `portier status`, so they cover the real outage and a little
// more: a failure judged "broker listening" is one.
func (tl *timeline) downDuring(s, e time.Time) bool {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for _, w := range tl.downs {
		if !w.start.After(e) && (w.end.IsZero() || !w.end.Before(s)) {
			return true
		}
	}
	return false
}

// killDuring reports whether a backend was killed during [s-killGrace, e].
func (tl *timeline) killDuring(s, e time.Time) bool {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for _, k := range tl.kills {
		if !k.Before(s.Add(-killGrace)) && !k.After(e) {
			return true
		}
	}
	return false
}

// downTotal is the time without a broker up to until.
func (tl *timeline) downTotal(until time.Time) time.Duration {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	var d time.Duration
	for _, w := range tl.downs {
		end := w.end
		if end.IsZero() || end.After(until) {
			end = until
		}
		if end.After(w.start) {
			d += end.Sub(w.start)
		}
	}
	return d
}

// judge turns the keys that depend on the chaos into their final form.
// killsApply says whether the attempt's service is the one being killed.
func (tl *timeline) judge(o *outcome, killsApply bool) {
	switch o.key {
	case keyBrokerUnavailable:
		o.key = KeyBrokerListening
		if tl.downDuring(o.start, o.end) {
			o.key = KeyBrokerDown
		}
	case keyCut:
		o.key = KeyCutUnexplained
		if killsApply && tl.killDuring(o.start, o.end) {
			o.key = KeyCutKilled
		}
	}
}

// tally accumulates outcomes into Counts.
type tally struct {
	mu sync.Mutex
	c  Counts
}

func (t *tally) add(o outcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := &t.c
	c.Attempted++
	switch o.kind {
	case kindCorrect:
		c.Correct++
		if c.Routes == nil {
			c.Routes = map[string]int64{}
		}
		c.Routes[o.route.String()]++
	case kindCorrupt:
		c.Corrupt++
		c.sample("corrupt", o.detail)
	case kindHung:
		c.Hung++
		c.sample("hung", o.detail)
	case kindInterrupted:
		c.Interrupted++
	case kindError:
		if c.Errors == nil {
			c.Errors = map[string]int64{}
		}
		c.Errors[o.key]++
		c.sample(o.key, o.detail)
	}
}

// addStuck counts attempts that never came back as hung.
func (t *tally) addStuck(n int, detail string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for range n {
		t.c.Attempted++
		t.c.Hung++
		t.c.sample("hung", detail)
	}
}

func (t *tally) counts() Counts {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.c
	c.Errors = maps.Clone(c.Errors)
	c.Routes = maps.Clone(c.Routes)
	c.Samples = map[string][]string{}
	for k, v := range t.c.Samples {
		c.Samples[k] = append([]string(nil), v...)
	}
	return c
}

func (c *Counts) sample(key, detail string) {
	if detail == "" {
		return
	}
	if c.Samples == nil {
		c.Samples = map[string][]string{}
	}
	if len(c.Samples[key]) < maxSamples {
		c.Samples[key] = append(c.Samples[key], detail)
	}
}
