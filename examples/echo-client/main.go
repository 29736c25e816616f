// Command echo-client sends a line to the echo service through the broker
// and prints the answer and the route the connection took.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"time"

	"github.com/portier/portier/client"
	"github.com/portier/portier/wire"
)

func main() {
	msg := flag.String("msg", "hello through portier", "text to send")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "echo", client.EarlyData([]byte(*msg)))
	var refused *client.RefusedError
	switch {
	case errors.As(err, &refused) && refused.Code == wire.CodeServiceUnknown:
		log.Fatalf("no echo service: add echo.toml to the services directory (%s)", refused.Reason)
	case err != nil:
		log.Fatal(err)
	}
	defer c.Close()
	c.CloseWrite() // the request was sent with the Hello; tell the backend we are done
	reply, err := io.ReadAll(c)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s (route %s, connection %d)\n", reply, c.Route(), c.ConnectionID())
}
