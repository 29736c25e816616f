package client

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portier/portier/internal/fdcount"
	"github.com/portier/portier/internal/ipc"
)

// TestAutoStartFailureNamesLog: on Windows too the started broker's output
// goes to broker.log, in the directory the broker keeps its files in
// (%LocalAppData%\portier\<pipe>), and Dial's error names it and quotes
// the broker's last words.
func TestAutoStartFailureNamesLog(t *testing.T) {
	fdcount.Check(t)
	isolateBrokerLog(t)
	pipe := endpointIn(newDir(t), "broker")
	t.Setenv(helperEnv, "fail")
	exited := waitBrokerExit(t)
	_, err := Dial(t.Context(), "echo", Socket(pipe),
		AutoStart(AutoStartConfig{Binary: testExecutable(t), Timeout: time.Minute}))
	if err == nil {
		t.Fatal("Dial succeeded without a broker")
	}
	dir, derr := ipc.PipeStateDir(pipe)
	if derr != nil {
		t.Fatal(derr)
	}
	if !strings.HasPrefix(dir, os.Getenv("LOCALAPPDATA")) {
		t.Fatalf("state directory %s is not under %%LocalAppData%%", dir)
	}
	logPath := filepath.Join(dir, "broker.log")
	for _, want := range []string{"failed before serving", "its log is " + logPath, "state directory: permission denied", "it exited: exit status 1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if !errors.Is(err, ErrBrokerUnavailable) {
		t.Errorf("error is not ErrBrokerUnavailable: %v", err)
	}
	if err := recvExit(t, exited); err == nil {
		t.Error("the failing helper exited 0")
	}
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "--log-file "+logPath) || !strings.Contains(string(log), "permission denied") {
		t.Errorf("log:\n%s", log)
	}
}
