//go:build unix

package broker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/portier/portier/internal/spawnenv"
)

// start execs p's command in its own process group with the portier
// environment, output appended to a capped log file. For listen-fds
// activation the broker binds the backend's socket and passes it as fd 3;
// LISTEN_PID must be the backend's own pid, which only the child knows, so
// the command runs through `sh -c 'LISTEN_PID=$$ exec "$0" "$@"'` (exec keeps
// the pid).
func (s *supervisor) start(p *proc, secret []byte, traceparent string) (*exec.Cmd, string, error) {
	def := p.def
	logDir := filepath.Join(s.b.cfg.StateDir, "logs")
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return nil, "", err
	}
	logPath := filepath.Join(logDir, def.Name+"-"+def.Version+".log")
	rotateLog(logPath, s.b.cfg.LogCap)
	out, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, logPath, err
	}
	defer out.Close()

	// The definition's env cannot override the contract: later entries win.
	env := spawnenv.Strip(os.Environ())
	for k, v := range def.Env {
		env = append(env, k+"="+v)
	}
	env = append(env, (&spawnenv.Env{
		Service:     def.Name,
		Version:     def.Version,
		Broker:      s.b.cfg.Socket,
		Endpoint:    p.endpoint,
		Secret:      secret,
		TraceParent: traceparent,
	}).Vars()...)

	cmd := exec.Command(def.Command[0], def.Command[1:]...)
	if p.listenFDs {
		ln, err := bindActivationSocket(p.endpoint)
		if err != nil {
			return nil, logPath, fmt.Errorf("bind activation socket: %w", err)
		}
		defer ln.Close()
		cmd = exec.Command("/bin/sh", append([]string{"-c", `LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"`}, def.Command...)...)
		cmd.ExtraFiles = []*os.File{ln}
		env = append(env, "LISTEN_FDS=1", "LISTEN_FDNAMES="+def.Name)
	}
	cmd.Env = env
	cmd.Dir = def.Dir
	cmd.Stdout = out
	cmd.Stderr = out
	// Own process group: a terminal's ^C to the broker does not reach
	// backends, and the broker can stop a whole backend tree.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, logPath, err
	}
	return cmd, logPath, nil
}

// bindActivationSocket binds a listening socket for a listen-fds backend and
// returns a descriptor to pass it. The path stays after the broker closes
// its copy; the backend owns it from then on.
func bindActivationSocket(path string) (*os.File, error) {
	_ = os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false)
	defer ln.Close()
	if err := os.Chmod(path, 0o600); err != nil {
		return nil, err
	}
	return ln.File()
}

func killGroup(pid int) {
	if pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}

func terminateGroup(pid int) {
	if pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGTERM)
	}
}

// exitStatus renders a Wait error for people: "exit status 1", "signal: killed".
func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ProcessState.String()
	}
	return err.Error()
}

// rotateLog keeps a backend log under limit: a larger log is moved to
// <path>.1 (replacing the previous one) before the next start appends.
func rotateLog(path string, limit int64) {
	if fi, err := os.Stat(path); err == nil && fi.Size() > limit {
		_ = os.Rename(path, path+".1")
	}
}

// tailLines returns the last n lines of the file, reading at most limit bytes.
func tailLines(path string, n int, limit int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-limit, 0)
	buf, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return ""
	}
	buf = bytes.TrimRight(buf, "\n")
	lines := bytes.Split(buf, []byte("\n"))
	if off > 0 && len(lines) > 1 {
		lines = lines[1:] // first line is probably cut
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// copyTruncate keeps the last keep bytes of path in path+".1" and empties
// path.
func copyTruncate(path string, keep int64) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return
	}
	off := max(fi.Size()-keep, 0)
	tail, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return
	}
	if err := os.WriteFile(path+".1", tail, 0o600); err != nil {
		return
	}
	_ = os.Truncate(path, 0)
}
