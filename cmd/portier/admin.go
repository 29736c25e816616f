package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

func init() {
	register(command{name: "status", summary: "show the broker and its backends", run: statusCmd,
		help:    "Show the running broker (pid, uptime, socket, directories, connection counts) and each backend it runs.\nExits 1 when no broker answers.",
		example: "portier status\nportier status --json | jq '.backends[] | {service, pid}'"})
	register(command{name: "metrics", summary: "print the broker's metrics (Prometheus text)", run: metricsCmd,
		help:    "Print the running broker's metrics in the Prometheus text format: Hellos by service and result,\nhandoffs, backends, and the Go runtime and process metrics. 'portier serve --metrics-listen' serves the same over HTTP.",
		example: "portier metrics | grep portier_hellos_total"})
}

// adminCall sends one admin request to the broker and returns its answer.
func adminCall(socket string, req *pb.AdminRequest) (*pb.AdminResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
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
}

func statusToJSON(socket string, st *pb.Status, err error) statusJSON {
	out := statusJSON{Socket: socket, Backends: []backendJSON{}}
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
	for _, b := range st.GetBackends() {
		out.Backends = append(out.Backends, backendJSON{
			Service: b.GetServiceName(), Version: b.GetVersion(), PID: b.GetPid(), UptimeMS: b.GetUptimeMs(),
			State: b.GetState(), Endpoint: b.GetEndpoint(), HandoffCapable: b.GetHandoffCapable(), RoutedConnections: b.GetConnections(),
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
	fmt.Fprintf(stdout, "broker pid %d, up %s, socket %s\n", st.GetBrokerPid(), time.Duration(st.GetUptimeMs())*time.Millisecond, st.GetSocket())
	if st.GetServicesDir() != "" {
		fmt.Fprintf(stdout, "services %s, state %s\n", st.GetServicesDir(), st.GetStateDir())
	}
	fmt.Fprintf(stdout, "connections %d: %d handed off, %d handoff fallbacks\n\n", st.GetConnections(), st.GetHandoffs(), st.GetFallbacks())
	if len(st.GetBackends()) == 0 {
		fmt.Fprintln(stdout, "no backends running")
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tVERSION\tPID\tUPTIME\tSTATE\tHANDOFF\tROUTED")
	for _, b := range st.GetBackends() {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%v\t%d\n", b.GetServiceName(), b.GetVersion(), b.GetPid(),
			(time.Duration(b.GetUptimeMs()) * time.Millisecond).Round(time.Second), b.GetState(), b.GetHandoffCapable(), b.GetConnections())
	}
	tw.Flush()
	return exitOK
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
