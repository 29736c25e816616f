package ipc

import "os"

// EnvSocket names the environment variable that overrides the broker's
// endpoint for clients and the portier CLI.
const EnvSocket = "PORTIER_SOCKET"

// SocketPath returns the broker endpoint that clients and the CLI use:
// $PORTIER_SOCKET when set, else DefaultSocketPath. It is the one lookup
// both go through, so that a client and `portier serve` started in the same
// environment agree.
func SocketPath() (string, error) {
	if p := os.Getenv(EnvSocket); p != "" {
		return p, nil
	}
	return DefaultSocketPath()
}
