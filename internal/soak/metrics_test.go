package soak

import "testing"

func TestParseMetrics(t *testing.T) {
	text := []byte(`# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 17
# HELP portier_hellos_total Hellos answered.
# TYPE portier_hellos_total counter
portier_hellos_total{outcome="handoff",reason="",service="echo"} 5
portier_hellos_total{outcome="handoff",reason="",service="steady"} 2
portier_hellos_total{outcome="reconnect",reason="rate_limited",service="echo"} 3
`)
	m, err := parseMetrics(text)
	if err != nil {
		t.Fatal(err)
	}
	if !m.hasGoroutines || m.goroutines != 17 {
		t.Errorf("goroutines %d (%v), want 17", m.goroutines, m.hasGoroutines)
	}
	if m.hellos["handoff"] != 7 || m.hellos["reconnect (rate_limited)"] != 3 || len(m.hellos) != 2 {
		t.Errorf("hellos %v", m.hellos)
	}
	m, err = parseMetrics([]byte("portier_hellos_total{outcome=\"handoff\",reason=\"\"} 1\n"))
	if err != nil || m.hasGoroutines || m.hellos["handoff"] != 1 {
		t.Errorf("without go_goroutines: %+v, %v", m, err)
	}
}
