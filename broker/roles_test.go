//go:build unix

package broker

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/portier/portier/backend"
	"github.com/portier/portier/internal/fdpass"
	"github.com/portier/portier/internal/ipc"
	"github.com/portier/portier/internal/spawnenv"
	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
	"google.golang.org/protobuf/proto"
)

// Helper-process roles beyond harness_test.go's echo, fail and broker. The
// fault-injecting backends speak the wire protocol by hand, so they can do
// what package backend never does: reject every offer, die on an offer, hold
// an offered descriptor without answering, or register with a forged secret.
var extraRoles = map[string]func(ctx context.Context) int{
	"reject":       func(ctx context.Context) int { return runFakeBackend(ctx, offerReject, false) },
	"die-on-offer": func(ctx context.Context) int { return runFakeBackend(ctx, offerDie, false) },
	"hold":         func(ctx context.Context) int { return runFakeBackend(ctx, offerHold, false) },
	// The same, registered as taking 0-RTT offers.
	"reject-0rtt":       func(ctx context.Context) int { return runFakeBackend(ctx, offerReject, true) },
	"die-on-offer-0rtt": func(ctx context.Context) int { return runFakeBackend(ctx, offerDie, true) },
	"hold-0rtt":         func(ctx context.Context) int { return runFakeBackend(ctx, offerHold, true) },
	"forger":            runForger,
	"listen-fds":        runListenFDs,
	"foreign-peer":      runForeignPeer,
}

// exitAlreadyRunning is the broker role's exit status when Serve fails with
// ErrAlreadyRunning (like `portier serve`); any other Serve error exits 4.
const exitAlreadyRunning = 3

// envSocket names the broker socket for a role the broker did not start.
const envSocket = "PTEST_SOCKET"

// forgerResultFile is where the forger role records its findings, in the
// broker's socket directory (the directory of its own endpoint).
const forgerResultFile = "forger-result"

// offerPolicy is what a fault-injecting backend does with each offer.
type offerPolicy int

const (
	offerReject offerPolicy = iota // close the fd unwritten, ACK accepted=false
	offerDie                       // exit(1) at once: no ACK, no ready event
	offerHold                      // keep the fd open, never ACK
)

// spawnEnv is what the broker passed a backend it started.
type spawnEnv struct {
	service, version, broker, endpoint string
	secret                             []byte
}

func readSpawnEnv() (spawnEnv, error) {
	e := spawnEnv{
		service:  os.Getenv(spawnenv.Service),
		version:  os.Getenv(spawnenv.Version),
		broker:   os.Getenv(spawnenv.Broker),
		endpoint: os.Getenv(spawnenv.Endpoint),
	}
	var err error
	e.secret, err = hex.DecodeString(os.Getenv(spawnenv.SpawnSecret))
	if err != nil || e.broker == "" || e.endpoint == "" {
		return e, fmt.Errorf("incomplete broker environment (secret error %v)", err)
	}
	return e, nil
}

func (e spawnEnv) register(secret []byte) *pb.Register {
	return &pb.Register{ServiceName: e.service, Version: e.version, Pid: uint32(os.Getpid()),
		Endpoint: e.endpoint, SpawnSecret: secret, HandoffCapable: true}
}

// registerByHand opens a control connection and sends reg, the way
// backend.Listen does, and returns the connection with the broker's answer.
// The reply is read with exact-length reads, so descriptors that arrive later
// stay for an fdpass.Receiver.
func registerByHand(sock string, reg *pb.Register) (*net.UnixConn, *pb.RegisterReply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := ipc.Dial(ctx, sock)
	if err != nil {
		return nil, nil, err
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	f, err := wire.NewRequest(wire.ProtocolBackendControl, 1, &pb.BackendControl{Msg: &pb.BackendControl_Register{Register: reg}})
	if err == nil {
		err = wire.WriteFrame(c, f)
	}
	var rf *pb.Frame
	if err == nil {
		rf, err = wire.ReadFrame(c, wire.MaxBody)
	}
	var m *pb.BackendControl
	if err == nil && rf.GetPayloadProtocol() != wire.ProtocolBackendControl {
		err = fmt.Errorf("reply of payload protocol 0x%04x", rf.GetPayloadProtocol())
	}
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

// serveEcho echoes every connection on ln until ln closes.
func serveEcho(ln net.Listener) {
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

// runFakeBackend serves echo on its own endpoint (the reconnect route),
// registers by hand (taking 0-RTT offers when zeroRTT is set) and treats
// every offer according to policy. It exits 0 when the broker asks it to
// quiesce or the control connection ends. On SIGUSR1 it drops its control
// connection and lingers until terminated.
func runFakeBackend(ctx context.Context, policy offerPolicy, zeroRTT bool) int {
	env, err := readSpawnEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := ipc.Listen(env.endpoint)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		return 1
	}
	defer ln.Close()
	go serveEcho(ln)
	reg := env.register(env.secret)
	reg.ZeroRttCapable = zeroRTT
	ctrl, rr, err := registerByHand(env.broker, reg)
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
	// SIGUSR1: drop the control connection without an Unregister, as a
	// dying process does, and linger (until terminated) as one whose exit
	// takes a while.
	lingering := make(chan struct{})
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		select {
		case <-usr1:
			close(lingering)
			ctrl.Close()
		case <-ctx.Done():
		}
	}()
	var held []int // offerHold: descriptors kept open until exit
	r := fdpass.NewReceiver(ctrl, wire.MaxBody)
	defer r.Close()
	for {
		msg, err := r.Next()
		if err != nil {
			select {
			case <-lingering:
				<-ctx.Done()
			default:
			}
			return 0 // the broker went away
		}
		f, err := wire.DecodeFrame(msg.Body)
		if err != nil {
			closeFDIfAny(msg.FD)
			fmt.Fprintln(os.Stderr, "bad frame:", err)
			return 1
		}
		switch f.GetPayloadProtocol() {
		case wire.ProtocolHandoff, wire.ProtocolZeroRTTOffer:
			switch policy {
			case offerDie:
				fmt.Fprintln(os.Stderr, "offer received; dying without an ACK")
				os.Exit(1)
			case offerHold:
				if msg.FD >= 0 {
					held = append(held, msg.FD)
				}
			case offerReject:
				closeFDIfAny(msg.FD) // a rejecting backend writes nothing on it
				o, _ := wire.DecodeHandoffOffer(f.GetPayload())
				if f.GetPayloadProtocol() == wire.ProtocolZeroRTTOffer {
					z, _ := wire.DecodeZeroRTTOffer(f.GetPayload())
					o = z.GetOffer()
				}
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
			}
		case wire.ProtocolBackendControl:
			closeFDIfAny(msg.FD)
			m := new(pb.BackendControl)
			if proto.Unmarshal(f.GetPayload(), m) == nil && m.GetQuiesce() != nil {
				for _, fd := range held {
					syscall.Close(fd)
				}
				return 0
			}
		default:
			closeFDIfAny(msg.FD)
		}
	}
}

func closeFDIfAny(fd int) {
	if fd >= 0 {
		syscall.Close(fd)
	}
}

// runForger is a backend the broker really started that first registers
// with a wrong spawn secret. It records the broker's answer and what arrived
// on that control connection afterwards in a file, then becomes an
// ordinary echo backend (registering properly through package backend).
// The result goes to forgerResultFile next to its endpoint.
func runForger(ctx context.Context) int {
	env, err := readSpawnEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	bad := append([]byte(nil), env.secret...)
	bad[0] ^= 0xff
	result := drainForged(registerByHand(env.broker, env.register(bad)))
	if err := os.WriteFile(filepath.Join(filepath.Dir(env.endpoint), forgerResultFile), []byte(result), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	l, err := backend.Listen(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "proper registration:", err)
		return 1
	}
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	serveEcho(l) // until the broker asks it to quiesce
	return 0
}

// drainForged describes a forged registration's outcome: the reply, then
// every frame and descriptor that arrived before EOF (bounded wait).
func drainForged(c *net.UnixConn, rr *pb.RegisterReply, err error) string {
	if err != nil {
		return "error " + err.Error()
	}
	defer c.Close()
	frames, fds := 0, 0
	end := "eof"
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	r := fdpass.NewReceiver(c, wire.MaxBody)
	defer r.Close()
	for {
		msg, err := r.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				end = err.Error()
			}
			break
		}
		frames++
		if msg.FD >= 0 {
			fds++
			syscall.Close(msg.FD)
		}
	}
	return fmt.Sprintf("accepted=%t code=%s frames=%d fds=%d end=%s", rr.GetAccepted(), rr.GetCode(), frames, fds, end)
}

// runListenFDs is a socket-activated backend that does not use portier: it
// checks the systemd environment (LISTEN_PID must be its own pid), serves on
// fd 3 and starts every connection with a line saying whether the checks
// passed, then echoes.
func runListenFDs(ctx context.Context) int {
	var problems []string
	if got, want := os.Getenv("LISTEN_PID"), strconv.Itoa(os.Getpid()); got != want {
		problems = append(problems, fmt.Sprintf("LISTEN_PID=%q, want %q", got, want))
	}
	if got := os.Getenv("LISTEN_FDS"); got != "1" {
		problems = append(problems, fmt.Sprintf("LISTEN_FDS=%q, want 1", got))
	}
	if got, want := os.Getenv("LISTEN_FDNAMES"), os.Getenv(spawnenv.Service); got != want || got == "" {
		problems = append(problems, fmt.Sprintf("LISTEN_FDNAMES=%q, want %q", got, want))
	}
	f := os.NewFile(3, "listen-fd")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fd 3 is not a listening socket:", err)
		return 1
	}
	if _, ok := ln.(*net.UnixListener); !ok {
		problems = append(problems, fmt.Sprintf("fd 3 is a %T, want a unix listener", ln))
	}
	status := "ok\n"
	if len(problems) > 0 {
		status = "bad: " + strings.Join(problems, "; ") + "\n"
	}
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			return 0
		}
		go func() {
			defer c.Close()
			if _, err := io.WriteString(c, status); err == nil {
				_, _ = io.Copy(c, c)
			}
		}()
	}
}

// runForeignPeer connects to $PTEST_SOCKET (as whatever user it runs as),
// writes a Hello and reports on stdout what came back. Exit 0: the broker
// closed without a single byte of reply.
func runForeignPeer(context.Context) int {
	c, err := net.DialTimeout("unix", os.Getenv(envSocket), 5*time.Second)
	if err != nil {
		fmt.Println("dial:", err)
		return 1
	}
	defer c.Close()
	f, err := wire.NewRequest(wire.ProtocolControl, 1, &pb.Hello{
		ClientMinProtocol: wire.ProtocolVersion, ClientMaxProtocol: wire.ProtocolVersion,
		ServiceName: "echo", WantedVersion: "1.0.0", ClientCapabilities: wire.CapHandlePassing,
	})
	if err != nil {
		fmt.Println(err)
		return 1
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	// The broker may already have closed: a failed write still means it
	// read nothing.
	if err := wire.WriteFrame(c, f); err != nil {
		fmt.Println("write hello:", err)
	} else {
		fmt.Println("hello written")
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	switch {
	case n > 0:
		fmt.Printf("got %d reply bytes\n", n)
		return 1
	case errors.Is(err, io.EOF):
		fmt.Println("closed: EOF")
		return 0
	case errors.Is(err, syscall.ECONNRESET):
		// The broker closed with our unread Hello in its buffer.
		fmt.Println("closed: ECONNRESET")
		return 0
	default:
		fmt.Println("read:", err)
		return 1
	}
}
