package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/portier/portier/internal/ipc"
)

// defaultSocketErr says why there is no default socket path (for example
// $XDG_RUNTIME_DIR is so long the path would not fit a socket address).
var defaultSocketErr error

// defaultSocket is $PORTIER_SOCKET, else the per-user default endpoint (the
// lookup clients use too); "" with defaultSocketErr set when there is none.
func defaultSocket() string {
	s, err := ipc.SocketPath()
	if err != nil {
		defaultSocketErr = err
		return ""
	}
	return s
}

// needSocket reports a missing socket path with its cause and what to do.
func needSocket(cmd, socket string, stderr io.Writer) bool {
	if socket != "" {
		return true
	}
	why := "no default"
	if defaultSocketErr != nil {
		why = defaultSocketErr.Error()
	}
	fmt.Fprintf(stderr, "portier %s: no broker socket path (%s); pass --socket or set PORTIER_SOCKET\n", cmd, why)
	return false
}

// defaultServicesDir is $XDG_CONFIG_HOME/portier/services, else
// ~/.config/portier/services.
func defaultServicesDir() string {
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "portier", "services")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".config", "portier", "services")
}
