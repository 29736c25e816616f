//go:build unix

package client

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

// halfCloseWorks: Unix sockets can shut down their writing side alone.
const halfCloseWorks = true

var leakOptions []goleak.Option

// newDir is a temporary directory with a short path, so socket paths stay
// under the sun_path limit whatever the test's name.
func newDir(t testing.TB) string {
	d, err := os.MkdirTemp("", "pc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

// endpointIn names the endpoint name in dir.
func endpointIn(dir, name string) string { return filepath.Join(dir, name+".sock") }

func listenAt(path string) (net.Listener, error) { return net.Listen("unix", path) }

func dialTest(path string) (net.Conn, error) { return net.Dial("unix", path) }

// isolateBrokerLog: on Unix an auto-started broker logs beside its socket,
// which each test's directory holds already.
func isolateBrokerLog(testing.TB) {}
