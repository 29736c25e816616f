// Command echo is a portier backend that echoes every byte back. Under the
// broker it takes handed-off and reconnecting clients alike; without one,
// run it with -listen /path/to.sock.
//
// When the broker asks it to quiesce (it was idle, its program or
// definition changed, `portier stop`), Accept fails and the program lets
// the connections it is serving finish before it exits: a client is never
// cut off mid-conversation.
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
	// A signal stops accepting too; the connections in progress still
	// finish below.
	context.AfterFunc(ctx, func() { l.Close() })
	for c, err := l.Accept(); err == nil; c, err = l.Accept() {
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
	if err := l.Shutdown(context.Background()); err != nil {
		log.Fatal(err)
	}
}
