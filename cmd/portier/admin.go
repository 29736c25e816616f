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
	register(command{name: "status", summary: "show the broker and its backends", run: statusCmd})
	register(command{name: "metrics", summary: "print the broker's metrics (Prometheus text)", run: metricsCmd})
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

func statusCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("status", stderr)
	socket := fs.String("socket", defaultSocket(), "broker socket (env PORTIER_SOCKET)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if !needSocket("status", *socket, stderr) {
		return exitUsage
	}
	resp, err := adminCall(*socket, &pb.AdminRequest{Verb: &pb.AdminRequest_Status{Status: &pb.StatusRequest{}}})
	if err != nil {
		fmt.Fprintln(stderr, "portier status:", err)
		return exitFailure
	}
	st := resp.GetStatus()
	fmt.Fprintf(stdout, "broker pid %d, up %s, socket %s\n", st.GetBrokerPid(), time.Duration(st.GetUptimeMs())*time.Millisecond, st.GetSocket())
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
