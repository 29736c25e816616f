package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os/signal"
	"syscall"
)

// ProxyMain is the copying proxy's command (ProxyCommand). It listens on
// --listen and, for every connection, dials --target and copies bytes both
// ways with half-close: the data path of a broker that proxies instead of
// handing connections off. It prints "ready" once it listens and returns at
// SIGTERM or SIGINT. Errors are as for ClientMain.
func ProxyMain(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("portier "+ProxyCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "", "socket to listen on")
	target := fs.String("target", "", "socket to forward to")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &UsageError{err}
	}
	if *listen == "" || *target == "" {
		return &UsageError{errors.New("--listen and --target are required")}
	}
	ln, err := net.Listen("unix", *listen)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() { <-ctx.Done(); ln.Close() }()
	fmt.Fprintln(stdout, "ready")
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		go proxyConn(c.(*net.UnixConn), *target)
	}
}

// proxyConn copies between the client c and a new connection to target
// until both directions saw EOF.
func proxyConn(c *net.UnixConn, target string) {
	defer c.Close()
	b, err := net.Dial("unix", target)
	if err != nil {
		return
	}
	bu := b.(*net.UnixConn)
	defer bu.Close()
	up := make(chan struct{})
	go func() {
		defer close(up)
		_, _ = io.Copy(bu, c)
		_ = bu.CloseWrite()
	}()
	_, _ = io.Copy(c, bu)
	_ = c.CloseWrite()
	<-up
}

// StallMain is a service command (StallCommand) that never registers with
// the broker: Hellos for it wait in the broker until its start timeout. The
// bench parks thousands of them to measure the broker's memory per pending
// connection. It returns at SIGTERM or SIGINT.
func StallMain() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-ctx.Done()
}
