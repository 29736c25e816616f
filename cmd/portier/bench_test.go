package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestBenchFlags(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--json", "--markdown"},
		{"bench", "--rounds", "0"},
		{"bench", "--rss-procs", "0"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != exitUsage {
			t.Errorf("%q: exit %d, want %d; stderr: %s", args, code, exitUsage, stderr.String())
		}
	}
}

// TestBenchFrom: a saved run renders on every platform, as the tables the
// bench package renders and as the same JSON.
func TestBenchFrom(t *testing.T) {
	saved := filepath.Join("..", "..", "internal", "bench", "testdata", "report-v1.json")
	for _, c := range []struct {
		flag, golden string
	}{
		{"", "report-v1.txt.golden"},
		{"--markdown", "report-v1.md.golden"},
	} {
		args := []string{"bench", "--from", saved}
		if c.flag != "" {
			args = append(args, c.flag)
		}
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != exitOK {
			t.Fatalf("%q: exit %d: %s", args, code, stderr.String())
		}
		want, err := os.ReadFile(filepath.Join(filepath.Dir(saved), c.golden))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(stdout.Bytes(), want) {
			t.Errorf("%q prints something else than %s:\n%s", args, c.golden, stdout.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"bench", "--from", saved, "--json"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("--json: exit %d: %s", code, stderr.String())
	}
	var rep map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil || rep["ratios"] == nil {
		t.Errorf("--from --json: %v, ratios %v", err, rep["ratios"])
	}
	if code := run([]string{"bench", "--from", filepath.Join(t.TempDir(), "missing.json")}, &stdout, &stderr); code != exitFailure {
		t.Errorf("--from a missing file: exit %d, want %d", code, exitFailure)
	}
}
