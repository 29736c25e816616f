package bench

import (
	"fmt"
	"io"
	"os"
)

// helperMain runs a helper role in a re-executed test binary.
func helperMain(role string) int {
	switch role {
	case "wait-stdin":
		// Stays until its stdin closes: a process the test can find and stop.
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, os.Stdin)
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown helper role", role)
	return 2
}
