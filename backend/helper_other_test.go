//go:build !linux && !darwin

package backend

import (
	"fmt"
	"os"
)

func runHelper(mode string, _ []string) int {
	fmt.Fprintf(os.Stderr, "backend test helper %q: not on this platform\n", mode)
	return 2
}
