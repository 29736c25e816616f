package broker

import (
	"fmt"
	"net"
	"path/filepath"
)

// socketFromListener fills Socket from a handed-over Listener, or checks
// that both name the same path: backends are told Socket, so it must be
// where the listener really is.
func (c *Config) socketFromListener() error {
	if c.Listener == nil {
		return nil
	}
	addr, ok := c.Listener.Addr().(*net.UnixAddr)
	if !ok || addr.Name == "" {
		return fmt.Errorf("broker: Config.Listener is not bound to a socket path (%v)", c.Listener.Addr())
	}
	switch {
	case c.Socket == "":
		c.Socket = addr.Name
	case filepath.Clean(c.Socket) != filepath.Clean(addr.Name):
		return fmt.Errorf("broker: Config.Socket %s is not the handed-over listener's path %s; leave --socket unset under socket activation, or make them agree", c.Socket, addr.Name)
	}
	return nil
}
