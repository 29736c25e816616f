// Command socket-activated is a backend that knows nothing about portier: it
// takes its listening socket from the systemd socket-activation convention
// (LISTEN_FDS, LISTEN_PID; the socket is fd 3) and answers each connection
// with one line. Serve it through a service definition with
// activation = "listen-fds".
package main

import (
	"fmt"
	"log"
	"net"
	"os"
	"strconv"
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
	for {
		c, err := l.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			defer c.Close()
			fmt.Fprintf(c, "hello from socket-activated pid %d\n", os.Getpid())
		}()
	}
}
