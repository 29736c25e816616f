//go:build !linux && !darwin && !windows

package fdpass

import "fmt"

func runHelper(mode string) error { return fmt.Errorf("no helpers on this platform") }
