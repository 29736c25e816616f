package broker

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/portier/portier/internal/ipc"
	"github.com/portier/portier/internal/spawnenv"
	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
	"golang.org/x/sys/windows"
)

// Helper-process roles of the Windows tests besides main_windows_test.go's
// echo. The fault-injecting backends speak the control protocol by hand so
// they can do what package backend never does: reject every offer (closing
// the handle), hold every handle without answering, ignore a quiesce.
var winRoles = map[string]func(ctx context.Context) int{
	"reject":   func(ctx context.Context) int { return runPipeBackend(ctx, offerRejectWin) },
	"hold":     func(ctx context.Context) int { return runPipeBackend(ctx, offerHoldWin) },
	"stubborn": func(ctx context.Context) int { return runPipeBackend(ctx, offerStubborn) },
	"tell-env": runTellEnv,
	"impostor": runImpostor,
	"sleeper":  func(context.Context) int { time.Sleep(time.Hour); return 0 },
}

// envOut names the file a role writes what the test wants to know to.
const envOut = "PTEST_OUT"

// winOfferPolicy is what a hand-written backend does with each offer.
type winOfferPolicy int

const (
	offerRejectWin winOfferPolicy = iota // CloseHandle, then ACK accepted=false
	offerHoldWin                         // keep the handle open, never ACK
	// offerStubborn: like offerHoldWin, and it ignores the broker's
	// quiesce and first starts a child (this binary as "sleeper"), whose
	// pid it writes to $PTEST_OUT: only killing its job stops both.
	offerStubborn
)

// registerPipe opens a control connection to the broker and registers as
// the backend env describes, with secret.
func registerPipe(env *spawnenv.Env, secret []byte) (net.Conn, *pb.RegisterReply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ipc.DialPipe(ctx, env.Broker)
	if err != nil {
		return nil, nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	f, err := wire.NewRequest(wire.ProtocolBackendControl, 1, &pb.BackendControl{Msg: &pb.BackendControl_Register{Register: &pb.Register{
		ServiceName: env.Service, Version: env.Version, Pid: uint32(os.Getpid()), Endpoint: env.Endpoint,
		SpawnSecret: secret, HandoffCapable: true,
	}}})
	if err == nil {
		err = wire.WriteFrame(c, f)
	}
	var rf *pb.Frame
	if err == nil {
		rf, err = wire.ReadFrame(c, wire.MaxBody)
	}
	var m *pb.BackendControl
	if err == nil {
		m, err = wire.DecodeBackendControl(rf.GetPayload())
	}
	if err == nil && m.GetRegisterReply() == nil {
		err = fmt.Errorf("reply is %T, not a RegisterReply", m.GetMsg())
	}
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("register: %w", err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, m.GetRegisterReply(), nil
}

// serveEchoPipe echoes every connection on ln until ln closes.
func serveEchoPipe(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
	}
}

// runPipeBackend serves echo on its own pipe (the reconnect route),
// registers by hand and treats every offer according to policy.
func runPipeBackend(ctx context.Context, policy winOfferPolicy) int {
	env, err := spawnenv.FromProcess()
	if err != nil || env == nil {
		fmt.Fprintln(os.Stderr, "no broker environment:", err)
		return 1
	}
	if policy == offerStubborn {
		exe, _ := os.Executable()
		child := exec.Command(exe, "-test.run=^$")
		child.Env = append(os.Environ(), roleEnv+"=sleeper")
		if err := child.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "start child:", err)
			return 1
		}
		if err := os.WriteFile(os.Getenv(envOut), []byte(fmt.Sprint(child.Process.Pid)), 0o600); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	ln, err := ipc.ListenPipe(env.Endpoint)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		return 1
	}
	defer ln.Close()
	go serveEchoPipe(ln)
	ctrl, rr, err := registerPipe(env, env.Secret)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer ctrl.Close()
	if !rr.GetAccepted() {
		fmt.Fprintln(os.Stderr, "registration refused:", rr.GetCode(), rr.GetReason())
		return 1
	}
	stop := context.AfterFunc(ctx, func() { ctrl.Close() })
	defer stop()
	for {
		f, err := wire.ReadFrame(ctrl, wire.MaxBody)
		if err != nil {
			if policy == offerStubborn {
				select {} // until the job is killed
			}
			return 0 // the broker went away
		}
		switch f.GetPayloadProtocol() {
		case wire.ProtocolHandoff:
			o, err := wire.DecodeHandoffOffer(f.GetPayload())
			if err != nil {
				fmt.Fprintln(os.Stderr, "bad offer:", err)
				return 1
			}
			if policy != offerRejectWin {
				continue // the handle stays open in this process
			}
			// Closed unwritten (a rejecting backend never writes), then the rejection.
			_ = windows.CloseHandle(windows.Handle(o.GetHandleValue()))
			ack, err := wire.NewRequest(wire.ProtocolHandoff, f.GetRequestId(), &pb.HandoffAck{
				Token: o.GetToken(), Accepted: false, ErrorDetail: "test backend rejects every offer", CorrelationId: o.GetCorrelationId(),
			})
			if err == nil {
				ack.Kind = pb.FrameKind_FRAME_KIND_RESPONSE
				_ = ctrl.SetWriteDeadline(time.Now().Add(5 * time.Second))
				err = wire.WriteFrame(ctrl, ack)
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "nack:", err)
			}
		case wire.ProtocolBackendControl:
			m, err := wire.DecodeBackendControl(f.GetPayload())
			if err == nil && m.GetQuiesce() != nil && policy != offerStubborn {
				return 0
			}
		}
	}
}

// runTellEnv writes the environment the broker gave it (secret included)
// to $PTEST_OUT, for an impostor to use, then serves as an echo backend.
func runTellEnv(ctx context.Context) int {
	vars := []string{spawnenv.Service, spawnenv.Version, spawnenv.Broker, spawnenv.Endpoint, spawnenv.SpawnSecret}
	var lines []string
	for _, k := range vars {
		lines = append(lines, k+"="+os.Getenv(k))
	}
	if err := os.WriteFile(os.Getenv(envOut), []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return runEcho(ctx)
}

// runImpostor is a process of the same user that the broker did not start:
// it registers with everything a real backend presents (its service,
// version, endpoint and spawn secret, from the environment) and prints the
// broker's answer.
func runImpostor(context.Context) int {
	env, err := spawnenv.FromProcess()
	if err != nil || env == nil {
		fmt.Println("no environment:", err)
		return 1
	}
	c, rr, err := registerPipe(env, env.Secret)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	defer c.Close()
	fmt.Printf("accepted=%t code=%s reason=%s\n", rr.GetAccepted(), rr.GetCode(), rr.GetReason())
	return 0
}
