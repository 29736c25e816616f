package soak

import (
	"bytes"
	"fmt"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// brokerMetrics is what the soak reads from `portier metrics`.
type brokerMetrics struct {
	// goroutines is go_goroutines, when the broker exports Go's collector.
	goroutines    int
	hasGoroutines bool
	// hellos sums portier_hellos_total by outcome and reason (over any
	// other label, such as the service): "handoff", "reconnect
	// (rate_limited)", "refused (ERROR_SHUTTING_DOWN)".
	hellos map[string]int64
}

func parseMetrics(text []byte) (brokerMetrics, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return brokerMetrics{}, fmt.Errorf("portier metrics: %w", err)
	}
	var m brokerMetrics
	if mf := mfs["go_goroutines"]; mf != nil && len(mf.GetMetric()) == 1 {
		m.goroutines, m.hasGoroutines = int(value(mf.GetMetric()[0])), true
	}
	if mf := mfs["portier_hellos_total"]; mf != nil {
		m.hellos = map[string]int64{}
		for _, s := range mf.GetMetric() {
			m.hellos[helloKey(s.GetLabel())] += int64(value(s))
		}
	}
	return m, nil
}

func helloKey(labels []*dto.LabelPair) string {
	var outcome, reason string
	for _, l := range labels {
		switch l.GetName() {
		case "outcome":
			outcome = l.GetValue()
		case "reason":
			reason = l.GetValue()
		}
	}
	if reason == "" {
		return outcome
	}
	return outcome + " (" + reason + ")"
}

// value reads a counter, gauge or untyped sample.
func value(s *dto.Metric) float64 {
	switch {
	case s.GetCounter() != nil:
		return s.GetCounter().GetValue()
	case s.GetGauge() != nil:
		return s.GetGauge().GetValue()
	}
	return s.GetUntyped().GetValue()
}
