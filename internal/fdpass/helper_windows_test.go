package fdpass

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// runHelper is the body of the re-executed test binary. Mode "pipe-backend"
// plays a backend: it reads the value of a handle the parent duplicated into
// it from stdin, and talks to the parent's pipe client on that handle.
func runHelper(mode string) error {
	if mode != "pipe-backend" {
		return fmt.Errorf("unknown helper mode")
	}
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read handle value: %w", err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(line), 10, 64)
	if err != nil {
		return fmt.Errorf("parse handle value: %w", err)
	}
	f := os.NewFile(uintptr(v), "handed-off pipe")
	defer f.Close()
	br := bufio.NewReader(f)
	got, err := br.ReadString('\n')
	if err != nil || got != "ping\n" {
		return fmt.Errorf("read from client: %q, %v", got, err)
	}
	if _, err := io.WriteString(f, "ack:"+got); err != nil {
		return fmt.Errorf("write to client: %w", err)
	}
	return nil
}
