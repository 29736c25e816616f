// Command echo is a portier backend that echoes every byte back. Under the
// broker it takes handed-off and reconnecting clients alike; without one,
// run it with -listen /path/to.sock.
package main

import (
	"context"
	"flag"
	"io"
	"log"
	"os/signal"
	"syscall"

	"github.com/portier/portier/backend"
)

func main() {
	listen := flag.String("listen", "", "endpoint when run without a broker")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	l, err := backend.Listen(ctx, backend.Address(*listen))
	if err != nil {
		log.Fatal(err)
	}
	go func() { <-ctx.Done(); l.Close() }()
	for {
		c, err := l.Accept()
		if err != nil {
			return // closed: on a signal or when the broker asks us to quiesce
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}
