package broker

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/portier/portier/internal/spawnenv"
)

// start runs p's command with the portier environment, its output appended
// to a capped log file, and records the process in p (pid, start time,
// p.os). The platform's startProcess decides how the process is started
// (its own process group on Unix, a job object on Windows) and how
// listen-fds activation is done. wait waits for the process to exit.
func (s *supervisor) start(p *proc, secret []byte, traceparent string) (wait func() error, logPath string, err error) {
	def := p.def
	logPath = s.logPath(def.Name, def.Version)
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		return nil, "", err
	}
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
	cmd.Env = env
	cmd.Dir = def.Dir
	cmd.Stdout = out
	cmd.Stderr = out
	wait, err = startProcess(p, cmd)
	return wait, logPath, err
}

// logPath is where the output of a service version's backends goes.
func (s *supervisor) logPath(service, version string) string {
	return filepath.Join(s.b.cfg.StateDir, "logs", service+"-"+version+".log")
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
