package bench

import "slices"

// RangeStat is a figure over rounds (or samples): median, min, max and
// every value in order.
type RangeStat struct {
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Values []float64 `json:"values"`
}

func newRange(vals []float64) RangeStat {
	if len(vals) == 0 {
		return RangeStat{}
	}
	s := slices.Clone(vals)
	slices.Sort(s)
	return RangeStat{Median: median(s), Min: s[0], Max: s[len(s)-1], Values: vals}
}

// median of sorted values; the mean of the middle two for an even count.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// quantile is the nearest-rank quantile of sorted samples.
func quantile(sorted []int64, q float64) int64 {
	i := int(float64(len(sorted))*q+0.999999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func sumValues(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
