package portiertest

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// BackendMain turns this test binary into a backend when a portiertest
// broker started it for a Role. Call it first in TestMain. When RoleEnv
// names one of roles, it runs that function with a context that ends on
// SIGTERM or SIGINT and exits: status 0 when the function returns nil, 1
// (the error on stderr, which the broker keeps in the backend's log)
// otherwise. An unknown role exits 2. In every other case it returns at
// once and TestMain goes on to run the tests.
//
// A role function is an ordinary portier backend: backend.Listen(ctx),
// then Accept until the listener stops, then Shutdown to let the
// connections in progress finish.
func BackendMain(roles map[string]func(ctx context.Context) error) {
	role, ok := os.LookupEnv(RoleEnv)
	if !ok {
		return
	}
	run := roles[role]
	if run == nil {
		fmt.Fprintf(os.Stderr, "portiertest: no backend for role %q; pass it to BackendMain in TestMain\n", role)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "portiertest: backend %q: %v\n", role, err)
		os.Exit(1)
	}
	os.Exit(0)
}
