package client

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
	"go.uber.org/goleak"
)

// Helper-process modes: the test binary re-executed as a fake `portier
// serve` for the AutoStart tests.
const (
	helperEnv     = "PORTIER_CLIENT_TEST_HELPER"      // "broker", "nobind", "fail" or "listen"
	helperPipeEnv = "PORTIER_CLIENT_TEST_HELPER_PIPE" // backend_pipe the fake broker names
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Args[1:]))
	}
	goleak.VerifyTestMain(m, leakOptions...)
}

// runHelper is the fake broker: `serve --socket PATH --log-file
// .../broker.log`, as AutoStart runs it. In mode "broker" it binds PATH,
// answers one Hello with a Negotiated naming $helperPipeEnv (no handoff)
// and exits. In mode "nobind" it exits at once without binding; in mode
// "fail" it writes an error to stderr and exits 1. In mode "listen" it
// binds PATH, says "ready" on stdout and closes every connection
// unanswered until stdin closes.
func runHelper(mode string, args []string) int {
	// AutoStart adds --log-file (beside the socket on Unix, in the pipe's
	// state directory on Windows: the TestAutoStartFailureNamesLog of each
	// checks where); tests that run the helper themselves pass the socket
	// alone.
	autoStarted := len(args) == 5 && args[3] == "--log-file" && filepath.Base(args[4]) == "broker.log"
	if len(args) < 3 || args[0] != "serve" || args[1] != "--socket" || (len(args) != 3 && !autoStarted) {
		fmt.Fprintf(os.Stderr, "helper: unexpected arguments %q\n", args)
		return 2
	}
	switch mode {
	case "nobind":
		return 0
	case "fail":
		// What a broker that cannot start writes before it exits.
		fmt.Fprintln(os.Stderr, "portier serve: broker: state directory: permission denied")
		return 1
	}
	l, err := listenAt(args[2])
	if err != nil {
		return 3
	}
	if mode == "listen" {
		fmt.Println("ready")
		go func() { _, _ = io.Copy(io.Discard, os.Stdin); l.Close() }()
		for {
			c, err := l.Accept()
			if err != nil {
				return 0
			}
			c.Close()
		}
	}
	defer l.Close()
	// Bounded life: a test that never connects must not leave us behind.
	t := time.AfterFunc(20*time.Second, func() { _ = l.Close() })
	defer t.Stop()
	c, err := l.Accept()
	if err != nil {
		return 4
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	hf, err := wire.ReadFrame(c, wire.MaxHelloBody)
	if err != nil {
		return 5
	}
	reply := &pb.HelloReply{Result: &pb.HelloReply_Negotiated{Negotiated: &pb.Negotiated{
		NegotiatedProtocol: 1, BackendPipe: os.Getenv(helperPipeEnv), ConnectionId: 1, DaemonVersion: "9.9.9",
	}}}
	f, err := wire.NewResponse(hf, wire.ProtocolControl, reply)
	if err != nil {
		return 6
	}
	if err := wire.WriteFrame(c, f); err != nil {
		return 7
	}
	return 0
}
