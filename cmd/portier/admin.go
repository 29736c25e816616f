package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

func init() {
	register(command{name: "status", summary: "show the broker and its backends", run: statusCmd,
		help:    "Show the running broker (pid, uptime, socket, directories, connection counts), each backend it runs\n(with the connections it holds open), and the services that fail to start, with their last error.\nExits 1 when no broker answers.",
		example: "portier status\nportier status --json | jq '.backends[] | {service, pid}'"})
	register(command{name: "metrics", summary: "print the broker's metrics (Prometheus text)", run: metricsCmd,
		help:    "Print the running broker's metrics in the Prometheus text format: Hellos by service and result,\nhandoffs, backends, and the Go runtime and process metrics. 'portier serve --metrics-listen' serves the same over HTTP.",
		example: "portier metrics | grep portier_hellos_total"})
}

// adminTimeout bounds an admin call that the broker answers at once.
const adminTimeout = 5 * time.Second

// adminCall sends one admin request to the broker and returns its answer,
// waiting at most adminTimeout.
func adminCall(socket string, req *pb.AdminRequest) (*pb.AdminResponse, error) {
	return adminCallWithin(socket, req, adminTimeout)
}

// adminCallWithin is adminCall for a verb that may take longer (restart
// waits for the new backend to start).
func adminCallWithin(socket string, req *pb.AdminRequest, timeout time.Duration) (*pb.AdminResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := dialSocket(ctx, socket)
	if err != nil {
		return nil, fmt.Errorf("no broker on %s: %w (start one with 'portier serve')", socket, err)
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	_ = c.SetDeadline(deadline)
	f, err := wire.NewRequest(wire.ProtocolAdmin, 1, req)
	if err != nil {
		return nil, err
	}
	if err := wire.WriteFrame(c, f); err != nil {
		return nil, err
	}
	rf, err := wire.ReadFrame(c, wire.MaxBody)
	if err != nil {
		return nil, fmt.Errorf("read admin reply: %w", err)
	}
	if rf.GetPayloadProtocol() != wire.ProtocolAdmin {
		// An old or foreign broker answers with a HelloReply refusal.
		if hr, err := wire.DecodeHelloReply(rf.GetPayload()); err == nil && hr.GetRefused() != nil {
			return nil, fmt.Errorf("broker refused: %s", hr.GetRefused().GetReason())
		}
		return nil, errors.New("unexpected admin reply")
	}
	resp, err := wire.DecodeAdminResponse(rf.GetPayload())
	if err != nil {
		return nil, err
	}
	if r := resp.GetRefused(); r != nil {
		return nil, fmt.Errorf("broker refused (%s): %s", r.GetCode(), r.GetReason())
	}
	return resp, nil
}

// statusJSON is `portier status --json`. Its field names are a stable
// interface, documented in docs/CLI.md: add fields, never rename them.
type statusJSON struct {
	Running     bool          `json:"running"`
	Socket      string        `json:"socket"`
	Error       string        `json:"error"`
	BrokerPID   uint32        `json:"broker_pid"`
	UptimeMS    uint64        `json:"uptime_ms"`
	ServicesDir string        `json:"services_dir"`
	StateDir    string        `json:"state_dir"`
	Connections uint64        `json:"connections"`
	Handoffs    uint64        `json:"handoffs"`
	Fallbacks   uint64        `json:"fallbacks"`
	Backends    []backendJSON `json:"backends"`
	Failures    []failureJSON `json:"failures"`
	// Handles a Windows broker left in backends, or took back.
	HandlesLeaked    uint64 `json:"handles_leaked"`
	HandlesReclaimed uint64 `json:"handles_reclaimed"`
}

type backendJSON struct {
	Service           string `json:"service"`
	Version           string `json:"version"`
	PID               uint32 `json:"pid"`
	UptimeMS          uint64 `json:"uptime_ms"`
	State             string `json:"state"`
	Endpoint          string `json:"endpoint"`
	HandoffCapable    bool   `json:"handoff_capable"`
	RoutedConnections uint64 `json:"routed_connections"`
	// LiveConnections is what the backend reported holding open; -1 for a
	// backend that does not report (listen-fds activation).
	LiveConnections int64 `json:"live_connections"`
}

// failureJSON is a service version whose last start failed.
type failureJSON struct {
	Service      string `json:"service"`
	Version      string `json:"version"`
	State        string `json:"state"`
	Code         string `json:"code"`
	Error        string `json:"error"`
	Failures     uint32 `json:"failures"`
	SinceMS      uint64 `json:"since_ms"`
	RetryAfterMS uint64 `json:"retry_after_ms"`
	Log          string `json:"log"`
}

func toBackendJSON(b *pb.BackendStatus) backendJSON {
	out := backendJSON{
		Service: b.GetServiceName(), Version: b.GetVersion(), PID: b.GetPid(), UptimeMS: b.GetUptimeMs(),
		State: b.GetState(), Endpoint: b.GetEndpoint(), HandoffCapable: b.GetHandoffCapable(), RoutedConnections: b.GetConnections(),
		LiveConnections: -1,
	}
	if b.LiveConnections != nil {
		out.LiveConnections = int64(b.GetLiveConnections())
	}
	return out
}

// liveText renders a backend's live connections for the status table.
func liveText(b *pb.BackendStatus) string {
	if b.LiveConnections == nil {
		return "-"
	}
	return strconv.FormatUint(uint64(b.GetLiveConnections()), 10)
}

func statusToJSON(socket string, st *pb.Status, err error) statusJSON {
	out := statusJSON{Socket: socket, Backends: []backendJSON{}, Failures: []failureJSON{}}
	if err != nil {
		out.Error = err.Error()
		return out
	}
	out.Running = true
	out.BrokerPID, out.UptimeMS = st.GetBrokerPid(), st.GetUptimeMs()
	if st.GetSocket() != "" {
		out.Socket = st.GetSocket()
	}
	out.ServicesDir, out.StateDir = st.GetServicesDir(), st.GetStateDir()
	out.Connections, out.Handoffs, out.Fallbacks = st.GetConnections(), st.GetHandoffs(), st.GetFallbacks()
	out.HandlesLeaked, out.HandlesReclaimed = st.GetHandlesLeaked(), st.GetHandlesReclaimed()
	for _, b := range st.GetBackends() {
		out.Backends = append(out.Backends, toBackendJSON(b))
	}
	for _, f := range st.GetFailures() {
		out.Failures = append(out.Failures, failureJSON{
			Service: f.GetServiceName(), Version: f.GetVersion(), State: f.GetState(), Code: wire.ErrorCode(f.GetCode()).String(),
			Error: f.GetLastError(), Failures: f.GetFailures(), SinceMS: f.GetSinceMs(), RetryAfterMS: f.GetRetryAfterMs(), Log: f.GetLog(),
		})
	}
	return out
}

// brokerStatus asks the broker on socket for its status.
func brokerStatus(socket string) (*pb.Status, error) {
	resp, err := adminCall(socket, &pb.AdminRequest{Verb: &pb.AdminRequest_Status{Status: &pb.StatusRequest{}}})
	if err != nil {
		return nil, err
	}
	return resp.GetStatus(), nil
}

func statusCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("status", stderr)
	socket := fs.String("socket", defaultSocket(), "broker socket (env PORTIER_SOCKET)")
	asJSON := fs.Bool("json", false, "print one JSON object (fields in docs/CLI.md); exits 1 with \"running\": false when no broker answers")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if !needSocket("status", *socket, stderr) {
		return exitUsage
	}
	st, err := brokerStatus(*socket)
	if *asJSON {
		if code := writeJSON(stdout, stderr, statusToJSON(*socket, st, err)); code != exitOK {
			return code
		}
		if err != nil {
			fmt.Fprintln(stderr, "portier status:", err)
			return exitFailure
		}
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "portier status:", err)
		return exitFailure
	}
	printStatus(stdout, st)
	return exitOK
}

// printStatus writes the broker's status for people.
func printStatus(stdout io.Writer, st *pb.Status) {
	fmt.Fprintf(stdout, "broker pid %d, up %s, socket %s\n", st.GetBrokerPid(), time.Duration(st.GetUptimeMs())*time.Millisecond, st.GetSocket())
	if st.GetServicesDir() != "" {
		fmt.Fprintf(stdout, "services %s, state %s\n", st.GetServicesDir(), st.GetStateDir())
	}
	fmt.Fprintf(stdout, "connections %d: %d handed off, %d handoff fallbacks\n", st.GetConnections(), st.GetHandoffs(), st.GetFallbacks())
	if st.GetHandlesLeaked() != 0 || st.GetHandlesReclaimed() != 0 {
		// Only a Windows broker duplicates handles into backends.
		fmt.Fprintf(stdout, "handles: %d left open in backends (leaked), %d taken back\n", st.GetHandlesLeaked(), st.GetHandlesReclaimed())
	}
	fmt.Fprintln(stdout)
	if len(st.GetBackends()) == 0 {
		fmt.Fprintln(stdout, "no backends running")
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SERVICE\tVERSION\tPID\tUPTIME\tSTATE\tHANDOFF\tLIVE\tROUTED")
		for _, b := range st.GetBackends() {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%v\t%s\t%d\n", b.GetServiceName(), b.GetVersion(), b.GetPid(),
				(time.Duration(b.GetUptimeMs()) * time.Millisecond).Round(time.Second), b.GetState(), b.GetHandoffCapable(), liveText(b), b.GetConnections())
		}
		tw.Flush()
	}
	if fs := st.GetFailures(); len(fs) > 0 {
		fmt.Fprintln(stdout, "\nnot starting:")
		for _, f := range fs {
			ago := (time.Duration(f.GetSinceMs()) * time.Millisecond).Round(time.Second)
			what := fmt.Sprintf("failing (failed starts: %d, the last %s ago)", f.GetFailures(), ago)
			if f.GetState() == "rate_limited" {
				what = fmt.Sprintf("rate limited (failed starts: %d; next start in %s)", f.GetFailures(),
					(time.Duration(f.GetRetryAfterMs()) * time.Millisecond).Round(time.Second))
			}
			fmt.Fprintf(stdout, "  %s@%s %s\n    %s\n", f.GetServiceName(), f.GetVersion(), what, f.GetLastError())
			if f.GetLog() != "" {
				fmt.Fprintf(stdout, "    log: %s (portier logs %s)\n", f.GetLog(), f.GetServiceName())
			}
		}
	}
}

func metricsCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("metrics", stderr)
	socket := fs.String("socket", defaultSocket(), "broker socket (env PORTIER_SOCKET)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if !needSocket("metrics", *socket, stderr) {
		return exitUsage
	}
	resp, err := adminCall(*socket, &pb.AdminRequest{Verb: &pb.AdminRequest_Metrics{Metrics: &pb.MetricsRequest{}}})
	if err != nil {
		fmt.Fprintln(stderr, "portier metrics:", err)
		return exitFailure
	}
	io.WriteString(stdout, resp.GetMetricsText())
	return exitOK
}
