//go:build unix

package main

import (
	"fmt"
	"net"
	"strings"

	"github.com/coreos/go-systemd/v22/activation"
)

// activationName is the FileDescriptorName= of portier.socket; with several
// descriptors handed over, it picks the broker's.
const activationName = "broker"

// activatedListener returns the broker socket a service manager handed over
// by socket activation (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES), or nil when
// this process was not socket-activated. The LISTEN_* variables are removed
// from the environment either way, so no backend inherits them.
func activatedListener() (*net.UnixListener, error) {
	files := activation.Files(true)
	if len(files) == 0 {
		return nil, nil
	}
	defer func() {
		// net.FileListener dups the descriptor it keeps; the rest go too.
		for _, f := range files {
			f.Close()
		}
	}()
	pick := -1
	var names []string
	for i, f := range files {
		names = append(names, f.Name())
		if f.Name() == activationName {
			if pick >= 0 {
				return nil, fmt.Errorf("two descriptors are named %q; give the broker's socket unit one ListenStream=", activationName)
			}
			pick = i
		}
	}
	if pick < 0 {
		if len(files) != 1 {
			return nil, fmt.Errorf("%d descriptors were handed over (%s) and none is named %q; set FileDescriptorName=%s in the socket unit",
				len(files), strings.Join(names, ", "), activationName, activationName)
		}
		pick = 0
	}
	ln, err := net.FileListener(files[pick])
	if err != nil {
		return nil, fmt.Errorf("descriptor %q is not a listening socket: %w; use ListenStream= with a path in the socket unit", files[pick].Name(), err)
	}
	ul, ok := ln.(*net.UnixListener)
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("descriptor %q is a %s socket, not a Unix stream socket; use ListenStream=/path in the socket unit", files[pick].Name(), ln.Addr().Network())
	}
	return ul, nil
}
