package broker

import (
	"errors"
	"net"
	"os"
	"sort"
	"time"

	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// serveAdmin answers one admin request (status or metrics) and closes.
func (b *Broker) serveAdmin(c net.Conn, f *pb.Frame) {
	defer c.Close()
	resp := new(pb.AdminResponse)
	req, err := wire.DecodeAdminRequest(f.GetPayload())
	var v *wire.Violation
	switch {
	case errors.As(err, &v):
		resp.Result = &pb.AdminResponse_Refused{Refused: v.Refused()}
	case err != nil:
		resp.Result = &pb.AdminResponse_Refused{Refused: wire.NewRefused(pb.ErrorCode_ERROR_INTERNAL, err.Error(), 0, nil)}
	case req.GetStatus() != nil:
		resp.Result = &pb.AdminResponse_Status{Status: b.status()}
	case req.GetMetrics() != nil:
		text, err := b.metrics.text()
		if err != nil {
			resp.Result = &pb.AdminResponse_Refused{Refused: wire.NewRefused(pb.ErrorCode_ERROR_INTERNAL, err.Error(), 0, nil)}
		} else {
			resp.Result = &pb.AdminResponse_MetricsText{MetricsText: text}
		}
	default: // a verb DecodeAdminRequest knows and this switch does not
		resp.Result = &pb.AdminResponse_Refused{Refused: wire.NewRefused(pb.ErrorCode_ERROR_INTERNAL, "admin verb not served", 0, nil)}
	}
	out, err := wire.NewResponse(f, wire.ProtocolAdmin, resp)
	if err != nil {
		return
	}
	_ = c.SetWriteDeadline(time.Now().Add(b.cfg.HelloTimeout))
	_ = wire.WriteFrame(c, out)
}

// stateName is the backend's state as `portier status` and the metrics
// name it.
func (p *proc) stateName() string {
	switch {
	case p.quiesced.Load():
		return "quiescing"
	case p.isReady() && p.control() != nil:
		return "registered"
	case p.isReady():
		return "ready"
	}
	return "starting"
}

func (b *Broker) status() *pb.Status {
	now := time.Now()
	st := &pb.Status{
		BrokerPid:   uint32(os.Getpid()),
		UptimeMs:    uint64(now.Sub(b.started).Milliseconds()),
		Socket:      b.cfg.Socket,
		Connections: b.metrics.connTotal.Load(),
		Handoffs:    b.metrics.handoffTotal.Load(),
		Fallbacks:   b.metrics.fallbackTotal.Load(),
		ServicesDir: b.cfg.ServicesDir,
		StateDir:    b.cfg.StateDir,
	}
	for _, p := range b.sup.snapshot() {
		ctrl := p.control()
		st.Backends = append(st.Backends, &pb.BackendStatus{
			ServiceName:    p.service,
			Version:        p.version,
			Pid:            uint32(p.pid),
			UptimeMs:       uint64(now.Sub(p.started).Milliseconds()),
			Endpoint:       p.endpoint,
			HandoffCapable: ctrl != nil && ctrl.handoffCapable,
			Connections:    p.routed.Load(),
			State:          p.stateName(),
		})
	}
	sort.Slice(st.Backends, func(i, j int) bool {
		if st.Backends[i].ServiceName != st.Backends[j].ServiceName {
			return st.Backends[i].ServiceName < st.Backends[j].ServiceName
		}
		return st.Backends[i].Pid < st.Backends[j].Pid
	})
	return st
}
