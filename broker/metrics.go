package broker

import (
	"bytes"
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/portier/portier/handoff"
	pb "github.com/portier/portier/wire/portierv1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
)

// metrics are the broker's Prometheus metrics, on a registry of its own so
// several brokers in one process (tests, the demo) do not collide. The
// registry also holds the Go runtime and process collectors, so `portier
// metrics` and the HTTP endpoint show goroutines, memory and descriptors
// next to the broker's own counters.
type metrics struct {
	reg           *prometheus.Registry
	hellos        *prometheus.CounterVec
	handoffs      *prometheus.CounterVec
	spawns        *prometheus.CounterVec
	registrations *prometheus.CounterVec
	peerRejected  prometheus.Counter
	fdPressure    prometheus.Counter
	parked        prometheus.Gauge
	parkedLeft    prometheus.Counter

	// Totals for `portier status`.
	handoffTotal  atomic.Uint64
	fallbackTotal atomic.Uint64
	connTotal     atomic.Uint64
}

func newMetrics(b *Broker) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		hellos: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portier_hellos_total",
			Help: "Hellos answered, by service, route (handoff, handoff_fallback, reconnect) or refusal, and reason or refusal code. service is empty for Hellos refused before their service resolved to a definition.",
		}, []string{"service", "outcome", "reason"}),
		handoffs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portier_handoffs_total", Help: "Handoff attempts by result, and for fallbacks the stage and reason.",
		}, []string{"result", "stage", "reason"}),
		spawns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portier_backend_spawns_total", Help: "Backend starts by service and result.",
		}, []string{"service", "result"}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portier_backend_registrations_total", Help: "Backend registrations by result.",
		}, []string{"result"}),
		peerRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portier_peers_rejected_total", Help: "Connections closed because the peer is another user.",
		}),
		fdPressure: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portier_accept_fd_pressure_total", Help: "Accepts that failed for lack of file descriptors.",
		}),
		parked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portier_parked_hellos", Help: "Hellos waiting for their backend to start (or re-register).",
		}),
		parkedLeft: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portier_parked_hellos_abandoned_total",
			Help: "Parked Hellos whose client closed its connection before the backend was ready; their sockets were released at once.",
		}),
	}
	m.reg.MustRegister(m.hellos, m.handoffs, m.spawns, m.registrations, m.peerRejected, m.fdPressure, m.parked, m.parkedLeft,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "portier_handoffs_in_flight", Help: "Handoffs awaiting their outcome."},
			func() float64 { return float64(b.orch.Stats().InFlight) }),
		// The orchestrator counts these; the metrics read its counters.
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "portier_handoff_handles_leaked_total",
			Help: "Handles duplicated into a backend (Windows) that it neither adopted nor rejected and that could not be taken back; each stays open in the backend until it exits. Always 0 on Unix."},
			func() float64 { return float64(b.orch.Stats().Leaked) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "portier_handoff_handles_reclaimed_total",
			Help: "Handles duplicated into a backend (Windows) whose offer provably never reached it, closed again by the broker. Always 0 on Unix."},
			func() float64 { return float64(b.orch.Stats().Reclaimed) }),
		backendCollector{b},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// refused counts a refused Hello. service is "" unless the Hello's service
// resolved to a definition: a label per name a client merely asked for
// would let any client grow the registry without bound.
func (m *metrics) refused(service string, code pb.ErrorCode) {
	m.hellos.WithLabelValues(service, "refused", code.String()).Inc()
}

func (m *metrics) route(service, route, reason string) {
	m.connTotal.Add(1)
	m.hellos.WithLabelValues(service, route, reason).Inc()
}

// handoff counts one handoff outcome by stage and reason.
func (m *metrics) handoff(service string, out handoff.Outcome) {
	m.connTotal.Add(1)
	if out.Completed {
		m.handoffTotal.Add(1)
		m.hellos.WithLabelValues(service, "handoff", "").Inc()
		m.handoffs.WithLabelValues("completed", "", "").Inc()
		return
	}
	m.fallbackTotal.Add(1)
	m.hellos.WithLabelValues(service, "handoff_fallback", out.Reason.String()).Inc()
	m.handoffs.WithLabelValues("fallback", out.Stage.String(), out.Reason.String()).Inc()
}

// MetricsHandler serves the broker's metrics (the same registry as `portier
// metrics`, Go runtime and process collectors included) in the Prometheus
// exposition formats, for `portier serve --metrics-listen`.
func (b *Broker) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(b.metrics.reg, promhttp.HandlerOpts{})
}

// Descriptions of the per-backend series backendCollector exports.
var (
	backendsDesc = prometheus.NewDesc("portier_backends",
		"Live backend processes by service, version and state (starting, ready, registered, quiescing).",
		[]string{"service", "version", "state"}, nil)
	backendRoutedDesc = prometheus.NewDesc("portier_backend_routed_connections_total",
		"Connections the broker routed to this backend process (handed off or sent to reconnect) since it started; not the connections it has open now.",
		[]string{"service", "version", "pid"}, nil)
	backendStartDesc = prometheus.NewDesc("portier_backend_start_time_seconds",
		"When this backend process started (or was re-adopted), in seconds since the Unix epoch.",
		[]string{"service", "version", "pid"}, nil)
	backendLiveDesc = prometheus.NewDesc("portier_backend_live_connections",
		"Connections this backend process has open now, as it reported them.",
		[]string{"service", "version", "pid"}, nil)
)

// backendCollector exports the live backends at scrape time, so a backend
// that exits leaves no stale series behind.
type backendCollector struct{ b *Broker }

func (c backendCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- backendsDesc
	ch <- backendRoutedDesc
	ch <- backendStartDesc
	ch <- backendLiveDesc
}

func (c backendCollector) Collect(ch chan<- prometheus.Metric) {
	type group struct{ service, version, state string }
	counts := map[group]int{}
	for _, p := range c.b.sup.snapshot() {
		counts[group{p.service, p.version, p.stateName()}]++
		pid := strconv.Itoa(p.pid)
		ch <- prometheus.MustNewConstMetric(backendRoutedDesc, prometheus.CounterValue, float64(p.routed.Load()), p.service, p.version, pid)
		ch <- prometheus.MustNewConstMetric(backendStartDesc, prometheus.GaugeValue, float64(p.started.UnixNano())/1e9, p.service, p.version, pid)
		if n, ok := p.liveConnections(); ok {
			ch <- prometheus.MustNewConstMetric(backendLiveDesc, prometheus.GaugeValue, float64(n), p.service, p.version, pid)
		}
	}
	for g, n := range counts {
		ch <- prometheus.MustNewConstMetric(backendsDesc, prometheus.GaugeValue, float64(n), g.service, g.version, g.state)
	}
}

func (m *metrics) spawn(service, result string) {
	m.spawns.WithLabelValues(service, result).Inc()
}

// text renders the metrics in the Prometheus text format.
func (m *metrics) text() (string, error) {
	mfs, err := m.reg.Gather()
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return "", err
		}
	}
	return buf.String(), nil
}
