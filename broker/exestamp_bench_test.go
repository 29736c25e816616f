package broker

import (
	"os"
	"testing"
	"time"
)

// The cost exeCheckEvery trades on (retire.go): a stamp taken from the
// cache against one taken by a stat.

func BenchmarkExeStampCached(b *testing.B) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	var c exeStamps
	now := time.Now()
	c.get(exe, now)
	for b.Loop() {
		c.get(exe, now)
	}
}

func BenchmarkExeStampStat(b *testing.B) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	var c exeStamps
	now := time.Now()
	for b.Loop() {
		now = now.Add(exeCheckEvery) // every look finds the stamp old
		c.get(exe, now)
	}
}
