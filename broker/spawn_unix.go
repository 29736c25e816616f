//go:build unix

package broker

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/portier/portier/internal/ipc"
)

// procOS is what the broker holds of a backend process besides its pid and
// start time: on Unix nothing. The process leads its own process group, so
// the group's id is the pid.
type procOS struct{}

// startProcess starts cmd in its own process group and records it in p. For
// listen-fds activation the broker binds the backend's socket and passes it
// as fd 3; LISTEN_PID must be the backend's own pid, which only the child
// knows, so the command runs through `sh -c 'LISTEN_PID=$$ exec "$0" "$@"'`
// (exec keeps the pid).
func startProcess(p *proc, cmd *exec.Cmd) (wait func() error, err error) {
	if p.listenFDs {
		ln, err := bindActivationSocket(p.endpoint)
		if err != nil {
			return nil, fmt.Errorf("bind activation socket: %w", err)
		}
		defer ln.Close()
		sh := exec.Command("/bin/sh", append([]string{"-c", `LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"`}, p.def.Command...)...)
		sh.Env = append(cmd.Env, "LISTEN_FDS=1", "LISTEN_FDNAMES="+p.def.Name)
		sh.Dir, sh.Stdout, sh.Stderr = cmd.Dir, cmd.Stdout, cmd.Stderr
		sh.ExtraFiles = []*os.File{ln}
		cmd = sh
	}
	// Own process group: a terminal's ^C to the broker does not reach
	// backends, and the broker can stop a whole backend tree.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p.pid = cmd.Process.Pid
	p.startTime, _ = ipc.ProcessStartTime(p.pid)
	return cmd.Wait, nil
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

// kill stops p's process group at once (SIGKILL).
func (p *proc) kill() {
	if p.pid > 0 {
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	}
}

// terminate asks p's process group to stop (SIGTERM).
func (p *proc) terminate() {
	if p.pid > 0 {
		_ = syscall.Kill(-p.pid, syscall.SIGTERM)
	}
}

// alive reports whether a re-adopted backend (not the broker's child, so
// not waited for) still runs: its pid runs with the recorded start time.
func (p *proc) alive() bool { return processMatches(p.pid, p.startTime) }

// adoptOS takes hold of a re-adopted backend's process once its
// registration passed the identity checks. Unix needs nothing: the pid and
// its process group are all the broker uses.
func (p *proc) adoptOS() error { return nil }

// releaseOS lets go of what adoptOS or startProcess took; nothing on Unix.
func (*procOS) releaseOS() {}

// backendEndpoint is the path of a backend's own socket: in the broker's
// private directory, named after the service's build (key) and a random
// part.
func backendEndpoint(socket, key, random string) string {
	return filepath.Join(filepath.Dir(socket), "be-"+key+"-"+random+".sock")
}

// backendEndpoints lists the backend sockets in the broker's directory
// (any broker's, live or left behind).
func backendEndpoints(socket string) []string {
	paths, _ := filepath.Glob(filepath.Join(filepath.Dir(socket), "be-*.sock"))
	return paths
}

// removeEndpoint removes the socket file a killed backend left behind.
func removeEndpoint(path string) { _ = os.Remove(path) }
