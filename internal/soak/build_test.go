package soak

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var portierFlag = flag.String("soak.portier", "", "portier binary to soak (default: build ./cmd/portier, with -race when the test is)")

var (
	buildOnce sync.Once
	buildDir  string
	builtBin  string
	buildErr  error
	buildOut  []byte
)

// portierBinary returns the portier binary under test: -soak.portier, or
// ./cmd/portier built once per test binary into a temporary directory.
func portierBinary(t *testing.T) string {
	t.Helper()
	if *portierFlag != "" {
		return *portierFlag
	}
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "soak-portier-"); buildErr != nil {
			return
		}
		builtBin = filepath.Join(buildDir, "portier")
		args := []string{"build", "-o", builtBin}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "github.com/portier/portier/cmd/portier")
		buildOut, buildErr = exec.Command("go", args...).CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build ./cmd/portier: %v\n%s", buildErr, buildOut)
	}
	return builtBin
}

func removeBuiltPortier() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// self is this test binary, which TestMain turns into a soak backend.
func self(t *testing.T) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return []string{exe}
}
