package ipc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/windows"
)

// leakOptions: go-winio runs one I/O completion goroutine for the life of
// the process.
var leakOptions = []goleak.Option{goleak.IgnoreAnyFunction("github.com/Microsoft/go-winio.ioCompletionProcessor")}

// underWine reports whether we run under Wine, which does not implement
// some Windows semantics (pipe DACLs, FILE_FLAG_FIRST_PIPE_INSTANCE).
func underWine() bool {
	return windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil
}

// runHelper is the body of a re-executed test binary. It reports on stdout
// and takes orders from stdin, so the parent never has to sleep.
func runHelper(role string) int {
	in := bufio.NewReader(os.Stdin)
	switch role {
	case "singleton":
		// Wait for the parent's "go" so all children race at once.
		if _, err := in.ReadByte(); err != nil {
			fmt.Println("error: no go:", err)
			return 2
		}
		l, err := ListenSingleton(os.Getenv("PORTIER_IPC_TEST_PATH"))
		switch {
		case errors.Is(err, ErrAlreadyRunning):
			fmt.Println("already")
			return 0
		case err != nil:
			fmt.Println("error:", err)
			return 2
		}
		fmt.Println("ok")
		_, _ = io.Copy(io.Discard, in) // hold until the parent closes stdin
		if err := l.Close(); err != nil {
			fmt.Println("error: close:", err)
			return 2
		}
		return 0
	case "dial":
		// Dial the pipe, check who serves it, and stay connected until
		// stdin closes.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := DialPipe(ctx, os.Getenv("PORTIER_IPC_TEST_PATH"))
		if err != nil {
			fmt.Println("error:", err)
			return 2
		}
		defer c.Close()
		cred, err := CheckPeer(c, EffectiveUID)
		if err != nil {
			fmt.Println("error: CheckPeer:", err)
			return 2
		}
		fmt.Println("server", cred.PID)
		_, _ = io.Copy(io.Discard, in)
		return 0
	case "wait":
		// Run until stdin closes.
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, in)
		return 0
	}
	fmt.Println("unknown helper role", role)
	return 2
}

func pipeName(t *testing.T) string {
	return `\\.\pipe\portier-test-` + strconv.Itoa(os.Getpid()) + "-" + strings.ReplaceAll(t.Name(), "/", "-")
}

func TestPipeRoundTripAndPIDs(t *testing.T) {
	name := pipeName(t)
	l, err := ListenPipe(name)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	// The name is taken: a second listener is a second broker.
	if underWine() {
		t.Log("skipping the singleton check: Wine ignores FILE_FLAG_FIRST_PIPE_INSTANCE")
	} else if l2, err := ListenPipe(name); !errors.Is(err, ErrAlreadyRunning) {
		t.Errorf("second ListenPipe: %v, want ErrAlreadyRunning", err)
		if err == nil {
			_ = l2.Close()
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type accepted struct {
		c   io.ReadWriteCloser
		pid int
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		s, err := l.Accept()
		if err != nil {
			ch <- accepted{err: err}
			return
		}
		pid, err := PipeClientPID(s)
		ch <- accepted{c: s, pid: pid, err: err}
	}()
	c, err := DialPipe(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var a accepted
	select {
	case a = <-ch:
	case <-ctx.Done():
		buf := make([]byte, 1<<16)
		t.Fatalf("Accept did not return\n%s", buf[:runtime.Stack(buf, true)])
	}
	if a.err != nil {
		t.Fatal(a.err)
	}
	defer a.c.Close()
	if a.pid != os.Getpid() {
		t.Errorf("client pid %d, want %d", a.pid, os.Getpid())
	}
	if pid, err := PipeServerPID(c); err != nil || pid != os.Getpid() {
		t.Errorf("server pid %d, %v; want %d", pid, err, os.Getpid())
	}
	deadline, _ := ctx.Deadline()
	_ = c.SetDeadline(deadline)
	if d, ok := a.c.(interface{ SetDeadline(time.Time) error }); ok {
		_ = d.SetDeadline(deadline)
	}
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(a.c, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q, %v", buf, err)
	}
}

func TestPipeDACL(t *testing.T) {
	if underWine() {
		t.Skip("Wine does not keep or enforce pipe security descriptors")
	}
	name := pipeName(t)
	l, err := ListenPipe(name)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	sd, err := windows.GetNamedSecurityInfo(name, windows.SE_KERNEL_OBJECT, windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		t.Fatal(err)
	}
	want, err := userOnlySDDL()
	if err != nil {
		t.Fatal(err)
	}
	if got := sd.String(); !strings.Contains(got, strings.TrimPrefix(want, "D:P")) {
		t.Errorf("pipe DACL %s, want %s", got, want)
	}
}

func TestProcessInfoWindows(t *testing.T) {
	a, err := ProcessStartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ProcessStartTime(os.Getpid())
	if err != nil || a != b || a == 0 {
		t.Fatalf("start time %d then %d, %v", a, b, err)
	}
	exe, err := ExecutablePath(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := os.Executable(); !strings.EqualFold(filepath.Base(exe), filepath.Base(want)) {
		t.Errorf("ExecutablePath = %q, want %q", exe, want)
	}
	if _, err := ProcessStartTime(0); err == nil {
		t.Error("pid 0 accepted")
	}
}

func TestDefaultSocketPathWindows(t *testing.T) {
	p, err := DefaultSocketPath()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p, `\\.\pipe\portier-`) || len(p) != len(`\\.\pipe\portier-`)+16 {
		t.Errorf("DefaultSocketPath = %q", p)
	}
	if pipeNameForSID("S-1-5-21-1") == pipeNameForSID("S-1-5-21-2") {
		t.Error("different SIDs share a pipe name")
	}
}
