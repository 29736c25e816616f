//go:build unix

package broker

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestCapLogs: a log over the cap keeps its newest half in .1 and is
// emptied in place (the backend's O_APPEND descriptor keeps working).
func TestCapLogs(t *testing.T) {
	dir := shortTempDir(t)
	b := &Broker{cfg: Config{StateDir: dir, LogCap: 1000}}
	s := newSupervisor(b)
	logs := filepath.Join(dir, "logs")
	if err := os.Mkdir(logs, 0o700); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(logs, "echo-1.0.0.log")
	small := filepath.Join(logs, "other-1.0.0.log")
	w, err := os.OpenFile(big, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	content := bytes.Repeat([]byte("0123456789"), 150) // 1500 bytes
	if _, err := w.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(small, []byte("short\\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.capLogs()
	if fi, _ := os.Stat(big); fi.Size() != 0 {
		t.Fatalf("log over the cap is %d bytes after capLogs, want 0", fi.Size())
	}
	kept, err := os.ReadFile(big + ".1")
	if err != nil || !bytes.Equal(kept, content[len(content)-500:]) {
		t.Fatalf(".1 holds %d bytes (%v), want the last 500", len(kept), err)
	}
	if _, err := w.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(big); string(got) != "after" {
		t.Fatalf("appending after the cap wrote %q, want it at the start of the emptied log", got)
	}
	if got, _ := os.ReadFile(small); string(got) != "short\\n" {
		t.Fatalf("log under the cap changed: %q", got)
	}
}
