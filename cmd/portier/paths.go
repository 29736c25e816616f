package main

import (
	"os"
	"path/filepath"

	"github.com/portier/portier/internal/ipc"
)

// defaultSocket is $PORTIER_SOCKET, else the per-user default endpoint.
func defaultSocket() string {
	if s := os.Getenv("PORTIER_SOCKET"); s != "" {
		return s
	}
	s, err := ipc.DefaultSocketPath()
	if err != nil {
		return ""
	}
	return s
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
