//go:build unix

package client

import (
	"bufio"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/portier/portier/internal/fdcount"
	"github.com/portier/portier/internal/ipc"
)

// staleEndpoint returns a socket file in dir that nobody accepts on: what a
// broker that was killed leaves behind.
func staleEndpoint(t *testing.T, dir string) string {
	sock := endpointIn(dir, "stale")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	_ = l.Close()
	return sock
}

// TestForeignBrokerRefused: a broker socket served by another uid than the
// client's effective one is refused before the Hello is written.
func TestForeignBrokerRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the fake broker as another user")
	}
	fdcount.Check(t)
	dir := newDir(t)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	// The test binary's own directory is private to root: run a copy.
	exe := filepath.Join(dir, "broker.test")
	copyFile(t, testExecutable(t), exe)
	sock := endpointIn(dir, "broker")
	cmd := exec.Command(exe, "serve", "--socket", sock)
	cmd.Env = append(os.Environ(), helperEnv+"=listen")
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stdin.Close(); _ = cmd.Wait() }()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
		t.Fatalf("fake broker: %q, %v", line, err)
	}
	_, err = Dial(t.Context(), "echo", Socket(sock), EarlyData([]byte("secret request")))
	if !errors.Is(err, ErrBrokerUnavailable) || !errors.Is(err, ipc.ErrForeignPeer) {
		t.Fatalf("Dial to a broker of uid 65534: %v, want ErrBrokerUnavailable and ipc.ErrForeignPeer", err)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}
