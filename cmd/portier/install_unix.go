//go:build unix

package main

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	pb "github.com/portier/portier/wire/portierv1"
)

// brokerStopWait bounds the wait for a stopped broker to exit; the broker
// itself finishes within its shutdown grace (5 s by default).
const brokerStopWait = 15 * time.Second

// runningBrokerPID asks the broker on socket for its pid; 0 when none
// answers. dialSocket has already checked that it runs as this user.
func runningBrokerPID(socket string) int {
	resp, err := adminCall(socket, &pb.AdminRequest{Verb: &pb.AdminRequest_Status{Status: &pb.StatusRequest{}}})
	if err != nil {
		return 0
	}
	return int(resp.GetStatus().GetBrokerPid())
}

// stopBroker sends SIGTERM and waits (bounded) until the process is gone,
// so its socket lock is free for the service manager's broker.
func stopBroker(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return err
	}
	deadline := time.Now().Add(brokerStopWait)
	for time.Now().Before(deadline) {
		// Not our child, so there is nothing to wait on but its existence.
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("it was still running %s after SIGTERM", brokerStopWait)
}
