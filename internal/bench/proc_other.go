//go:build !linux

package bench

import (
	"context"
	"errors"
	"syscall"
	"time"
)

// errUnsupported: measuring reads other processes' CPU time, context
// switches and memory from /proc.
var errUnsupported = errors.New("bench measures on Linux only (it reads CPU time and memory of its processes from /proc); --from renders a saved report anywhere")

func checkPlatform() error { return errUnsupported }

func makePrivateDir(string) error                 { return errUnsupported }
func readProcSample(int) (procSample, error)      { return procSample{}, errUnsupported }
func readSystemCPU() (int64, int64, error)        { return 0, 0, errUnsupported }
func readProcMem(int) (ProcMem, error)            { return ProcMem{}, errUnsupported }
func countFDs(int) (int, error)                   { return 0, errUnsupported }
func stopProcess(int, time.Duration)              {}
func watchBrokenOutput(context.CancelFunc) func() { return func() {} }
func raiseNoFile() (uint64, error)                { return 0, errUnsupported }
func childSysProcAttr() *syscall.SysProcAttr      { return nil }

// ProcsWithEnv finds processes by their environment on Linux only.
func ProcsWithEnv(...string) []int { return nil }
