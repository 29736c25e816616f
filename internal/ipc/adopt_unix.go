//go:build unix

package ipc

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
)

// AdoptSingleton takes over a listening Unix socket that another process
// bound, typically a service manager handing it over by socket activation
// (systemd's LISTEN_FDS), and makes it the singleton endpoint at its path.
//
// The socket's directory must pass the same private-directory checks as
// ListenSingleton's (EnsurePrivateDir): the directory, not the socket's own
// mode, is what keeps other users away. The singleton lock next to the path
// is taken as ListenSingleton takes it, so a broker started by hand and an
// activated one never serve (or keep state for) the same endpoint at once;
// a lock held elsewhere yields ErrAlreadyRunning.
//
// The returned Listener does not own the path: Close closes this process's
// descriptor and releases the lock but leaves the socket file to whoever
// bound it, so the service manager keeps listening (and queuing clients)
// across broker restarts. AdoptSingleton owns ul from the call on: on error
// it has closed it.
func AdoptSingleton(ul *net.UnixListener) (*Listener, error) {
	l, err := adopt(ul)
	if err != nil {
		_ = ul.Close()
		return nil, err
	}
	return l, nil
}

func adopt(ul *net.UnixListener) (*Listener, error) {
	addr, ok := ul.Addr().(*net.UnixAddr)
	if !ok || addr.Net != "unix" {
		return nil, fmt.Errorf("ipc: adopted socket is %v, not a Unix stream socket", ul.Addr())
	}
	path := addr.Name
	if path == "" || path[0] == '@' || !filepath.IsAbs(path) {
		// An abstract or unnamed socket has no directory whose permissions
		// keep other users out, and backends need a path to reach it.
		return nil, fmt.Errorf("ipc: adopted socket %q is not bound to an absolute filesystem path", path)
	}
	if err := EnsurePrivateDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	lock, err := lockFile(path + ".lock")
	if err != nil {
		if errors.Is(err, ErrAlreadyRunning) {
			return nil, fmt.Errorf("%w; a broker not started by the service manager is running on %s: stop it", err, path)
		}
		return nil, err
	}
	// ul came from a descriptor (net.FileListener), so closing it never
	// unlinks the path; ino stays 0, so Close never removes the file.
	return &Listener{ul: ul, path: path, lock: lock}, nil
}
