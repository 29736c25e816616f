package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/signal"
	"syscall"
)

func init() {
	register(command{name: "__bench-proxy", hidden: true, run: benchProxyCmd,
		summary: "the bench's copying proxy (what a proxying broker would cost)"})
	register(command{name: "__bench-stall", hidden: true, run: benchStallCmd,
		summary: "a backend that never becomes ready (the bench's slow start)"})
}

// benchProxyCmd listens on --listen and, for every connection, dials
// --target and copies bytes both ways with half-close: the data path of a
// broker that proxies instead of handing connections off.
func benchProxyCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("__bench-proxy", stderr)
	listen := fs.String("listen", "", "socket to listen on")
	target := fs.String("target", "", "socket to forward to")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *listen == "" || *target == "" {
		fmt.Fprintln(stderr, "bench proxy: --listen and --target are required")
		return exitUsage
	}
	ln, err := net.Listen("unix", *listen)
	if err != nil {
		fmt.Fprintln(stderr, "bench proxy:", err)
		return exitFailure
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() { <-ctx.Done(); ln.Close() }()
	fmt.Fprintln(stdout, "ready")
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return exitOK
		}
		if err != nil {
			fmt.Fprintln(stderr, "bench proxy:", err)
			return exitFailure
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

// benchStallCmd is a service command that never registers with the broker:
// Hellos for it wait in the broker until its start timeout. The bench holds
// thousands of them to measure the broker's memory per pending connection.
func benchStallCmd(_ []string, _, _ io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-ctx.Done()
	return exitOK
}
