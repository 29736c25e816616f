//go:build !linux

package bench

// readCPUModelAndKernel is known from /proc on Linux only.
func readCPUModelAndKernel() (model, kernel string) { return "", "" }
