package bench

import (
	"slices"
	"testing"
)

func TestQuantile(t *testing.T) {
	s := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, c := range []struct {
		q    float64
		want int64
	}{{0.5, 5}, {0.99, 10}, {0.1, 1}, {0.999, 10}, {0, 1}, {1, 10}} {
		if got := quantile(s, c.q); got != c.want {
			t.Errorf("quantile(%v) = %d, want %d", c.q, got, c.want)
		}
	}
	if got := quantile([]int64{7}, 0.99); got != 7 {
		t.Errorf("quantile of one sample = %d, want 7", got)
	}
}

func TestMedianAndRange(t *testing.T) {
	if m := median([]float64{1, 2, 3, 10}); m != 2.5 {
		t.Errorf("median of an even count = %v, want 2.5", m)
	}
	if m := median([]float64{1, 2, 10}); m != 2 {
		t.Errorf("median of an odd count = %v, want 2", m)
	}
	vals := []float64{3, 1, 2}
	r := newRange(vals)
	if r.Median != 2 || r.Min != 1 || r.Max != 3 || !slices.Equal(r.Values, []float64{3, 1, 2}) {
		t.Errorf("newRange = %+v, want median 2, min 1, max 3, values in round order", r)
	}
	if !slices.Equal(vals, []float64{3, 1, 2}) {
		t.Errorf("newRange sorted its argument: %v", vals)
	}
	if z := newRange(nil); z.Median != 0 || z.Values != nil {
		t.Errorf("newRange(nil) = %+v", z)
	}
}
