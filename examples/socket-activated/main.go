// Command socket-activated is a backend that knows nothing about portier: it
// takes its listening socket from the systemd socket-activation convention
// (LISTEN_FDS, LISTEN_PID; the socket is fd 3) and answers each connection
// with one line. Serve it through a service definition with
// activation = "listen-fds".
//
// The broker stops such a backend (idle, changed, `portier stop`) with
// SIGTERM, so on SIGTERM it stops accepting and lets the connections in
// progress finish before it exits.
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
)

func main() {
	pid, _ := strconv.Atoi(os.Getenv("LISTEN_PID"))
	if os.Getenv("LISTEN_FDS") != "1" || pid != os.Getpid() {
		log.Fatal("expected one socket from LISTEN_FDS for this pid")
	}
	l, err := net.FileListener(os.NewFile(3, "listen-fd"))
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	context.AfterFunc(ctx, func() { l.Close() })
	var live sync.WaitGroup
	for {
		c, err := l.Accept()
		if err != nil {
			break
		}
		live.Add(1)
		go func() {
			defer live.Done()
			defer c.Close()
			fmt.Fprintf(c, "hello from socket-activated pid %d\n", os.Getpid())
		}()
	}
	live.Wait()
}
