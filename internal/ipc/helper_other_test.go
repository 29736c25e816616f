//go:build !unix && !windows

package ipc

import (
	"fmt"

	"go.uber.org/goleak"
)

var leakOptions []goleak.Option

func runHelper(role string) int {
	fmt.Println("no helper roles on this platform:", role)
	return 2
}
