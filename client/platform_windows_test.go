package client

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"testing"

	"github.com/portier/portier/internal/ipc"
	"go.uber.org/goleak"
	"golang.org/x/sys/windows"
)

// halfCloseWorks: a byte-mode named pipe has no half-close.
const halfCloseWorks = false

// leakOptions: go-winio runs one I/O completion goroutine for the life of
// the process.
var leakOptions = []goleak.Option{goleak.IgnoreAnyFunction("github.com/Microsoft/go-winio.ioCompletionProcessor")}

var dirSeq atomic.Int64

// newDir returns a prefix of pipe names no other test (or test process)
// uses: pipes live in one flat namespace, not in directories.
func newDir(testing.TB) string {
	return fmt.Sprintf(`\\.\pipe\portier-clienttest-%d-%d`, os.Getpid(), dirSeq.Add(1))
}

// endpointIn names the endpoint name under the prefix dir.
func endpointIn(dir, name string) string { return dir + "-" + name }

func listenAt(path string) (net.Listener, error) { return ipc.ListenPipe(path) }

func dialTest(path string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	return ipc.DialPipe(ctx, path)
}

// staleEndpoint returns a pipe that exists but has no instance listening:
// what a broker leaves behind when it exits while backends still hold
// instances it handed them. Here the test holds the one instance, with a
// client connected to it.
func staleEndpoint(t *testing.T, dir string) string {
	name := endpointIn(dir, "stale")
	name16, err := windows.UTF16PtrFromString(name)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := windows.CreateNamedPipe(name16, windows.PIPE_ACCESS_DUPLEX,
		windows.PIPE_TYPE_BYTE|windows.PIPE_READMODE_BYTE|windows.PIPE_WAIT,
		windows.PIPE_UNLIMITED_INSTANCES, 4096, 4096, 0, nil)
	if err != nil {
		t.Fatalf("CreateNamedPipe: %v", err)
	}
	t.Cleanup(func() { _ = windows.CloseHandle(srv) })
	cli, err := windows.CreateFile(name16, windows.GENERIC_READ|windows.GENERIC_WRITE, 0, nil,
		windows.OPEN_EXISTING, 0, 0)
	if err != nil {
		t.Fatalf("connect to the only instance: %v", err)
	}
	t.Cleanup(func() { _ = windows.CloseHandle(cli) })
	return name
}

// isolateBrokerLog points %LocalAppData%, where an auto-started broker's log
// goes, at a directory of the test's own.
func isolateBrokerLog(t *testing.T) { t.Setenv("LOCALAPPDATA", t.TempDir()) }
