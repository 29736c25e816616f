//go:build unix

package broker

import (
	"bytes"
	"sync/atomic"

	"github.com/portier/portier/handoff"
	pb "github.com/portier/portier/wire/portierv1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// metrics are the broker's Prometheus metrics, on a registry of its own so
// several brokers in one process (tests, the demo) do not collide.
type metrics struct {
	reg           *prometheus.Registry
	hellos        *prometheus.CounterVec
	handoffs      *prometheus.CounterVec
	spawns        *prometheus.CounterVec
	registrations *prometheus.CounterVec
	peerRejected  prometheus.Counter
	fdPressure    prometheus.Counter

	// Totals for `portier status`.
	handoffTotal  atomic.Uint64
	fallbackTotal atomic.Uint64
	connTotal     atomic.Uint64
}

func newMetrics(b *Broker) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		hellos: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portier_hellos_total", Help: "Hellos answered, by route (handoff, reconnect) or refusal code.",
		}, []string{"outcome", "reason"}),
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
	}
	m.reg.MustRegister(m.hellos, m.handoffs, m.spawns, m.registrations, m.peerRejected, m.fdPressure,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "portier_backends", Help: "Live backend processes."},
			func() float64 { return float64(len(b.sup.snapshot())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "portier_handoffs_in_flight", Help: "Handoffs awaiting their outcome."},
			func() float64 { return float64(b.orch.Stats().InFlight) }),
	)
	return m
}

func (m *metrics) refused(code pb.ErrorCode) {
	m.hellos.WithLabelValues("refused", code.String()).Inc()
}

func (m *metrics) route(route, reason string) {
	m.connTotal.Add(1)
	m.hellos.WithLabelValues(route, reason).Inc()
}

// handoff counts one handoff outcome by stage and reason.
func (m *metrics) handoff(out handoff.Outcome) {
	m.connTotal.Add(1)
	if out.Completed {
		m.handoffTotal.Add(1)
		m.hellos.WithLabelValues("handoff", "").Inc()
		m.handoffs.WithLabelValues("completed", "", "").Inc()
		return
	}
	m.fallbackTotal.Add(1)
	m.hellos.WithLabelValues("handoff_fallback", out.Reason.String()).Inc()
	m.handoffs.WithLabelValues("fallback", out.Stage.String(), out.Reason.String()).Inc()
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
