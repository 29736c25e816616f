package broker

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"sort"
	"time"

	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// serveAdmin answers one admin request (status, metrics, stop, restart or
// logs) and closes.
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
	case req.GetStop() != nil:
		name := req.GetStop().GetServiceName()
		res := &pb.ServiceActionResult{ServiceName: name}
		now := time.Now()
		for _, p := range b.sup.stopService(name, "portier stop") {
			res.Stopped = append(res.Stopped, p.status(now))
		}
		b.log.Info("admin: stop", "service", name, "backends", len(res.Stopped))
		resp.Result = &pb.AdminResponse_ServiceAction{ServiceAction: res}
	case req.GetRestart() != nil:
		name := req.GetRestart().GetServiceName()
		b.log.Info("admin: restart", "service", name)
		res := b.sup.restartService(name)
		resp.Result = &pb.AdminResponse_ServiceAction{ServiceAction: res}
	case req.GetLogs() != nil:
		lf, err := b.logFile(req.GetLogs().GetServiceName(), req.GetLogs().GetVersion())
		if err != nil {
			resp.Result = &pb.AdminResponse_Refused{Refused: refusalFor(err)}
		} else {
			resp.Result = &pb.AdminResponse_LogFile{LogFile: lf}
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

// status describes p for `portier status` and the stop and restart verbs.
func (p *proc) status(now time.Time) *pb.BackendStatus {
	ctrl := p.control()
	bs := &pb.BackendStatus{
		ServiceName:    p.service,
		Version:        p.version,
		Pid:            uint32(p.pid),
		UptimeMs:       uint64(now.Sub(p.started).Milliseconds()),
		Endpoint:       p.endpoint,
		HandoffCapable: ctrl != nil && ctrl.handoffCapable,
		Connections:    p.routed.Load(),
		State:          p.stateName(),
	}
	if n, ok := p.liveConnections(); ok {
		live := uint32(min(n, math.MaxUint32))
		bs.LiveConnections = &live
	}
	return bs
}

// logFile says where the output log of a service's backend is: of the
// version asked for, else the one the definition names, else the newest
// running backend's, else the last one that failed to start.
func (b *Broker) logFile(name, version string) (*pb.LogFile, error) {
	procs := b.sup.snapshot()
	sort.Slice(procs, func(i, j int) bool { return procs[i].started.After(procs[j].started) })
	if version == "" {
		if def, err := b.defs.Lookup(name); err == nil {
			version = def.Version
		}
	}
	if version == "" {
		for _, p := range procs {
			if p.service == name {
				version = p.version
				break
			}
		}
	}
	if version == "" {
		for _, k := range b.sup.failed.keys() {
			if k.service == name {
				version = k.version
			}
		}
	}
	if version == "" {
		return nil, &refusal{code: pb.ErrorCode_ERROR_SERVICE_UNKNOWN,
			reason: fmt.Sprintf("no service %q is defined in %s or running", name, b.cfg.ServicesDir)}
	}
	lf := &pb.LogFile{ServiceName: name, Version: version, Path: b.sup.logPath(name, version)}
	for _, p := range procs {
		if p.service == name && p.version == version && !p.quiesced.Load() {
			lf.Pid = uint32(p.pid)
			break
		}
	}
	if lf.Pid == 0 {
		for _, p := range procs { // a draining one writes it too
			if p.service == name && p.version == version {
				lf.Pid = uint32(p.pid)
				break
			}
		}
	}
	return lf, nil
}

func (b *Broker) status() *pb.Status {
	now := time.Now()
	hs := b.orch.Stats()
	st := &pb.Status{
		BrokerPid:   uint32(os.Getpid()),
		UptimeMs:    uint64(now.Sub(b.started).Milliseconds()),
		Socket:      b.cfg.Socket,
		Connections: b.metrics.connTotal.Load(),
		Handoffs:    b.metrics.handoffTotal.Load(),
		Fallbacks:   b.metrics.fallbackTotal.Load(),
		ServicesDir: b.cfg.ServicesDir,
		StateDir:    b.cfg.StateDir,
		Failures:    b.sup.failureStatus(now),

		HandlesLeaked:    hs.Leaked,
		HandlesReclaimed: hs.Reclaimed,
	}
	for _, p := range b.sup.snapshot() {
		st.Backends = append(st.Backends, p.status(now))
	}
	sort.Slice(st.Backends, func(i, j int) bool {
		if st.Backends[i].ServiceName != st.Backends[j].ServiceName {
			return st.Backends[i].ServiceName < st.Backends[j].ServiceName
		}
		return st.Backends[i].Pid < st.Backends[j].Pid
	})
	return st
}
