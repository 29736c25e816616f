// Package bench owns `portier bench`: it starts a broker, an echo backend, a
// copying proxy and load-generating client processes in a private directory,
// measures connection setup by route (direct, handoff, reconnect, the
// hello-skip fast path, proxy) over a concurrency curve with each process's
// CPU time, context switches and read/write syscalls, streaming, cold
// starts, the broker's memory and how soon it lets go of parked clients, and
// turns the raw figures into ratios, summaries and tables.
//
// The package is split by phase: the environment (machine, code and load
// facts), round trips, streaming, cold start, memory, the proxy and the
// stalled backend, the load generator run in each client process, and the
// report. The report (summaries, ratios, targets, the --json shape, the
// --from recomputation and the text and markdown tables) is plain
// computation and builds and is tested on every platform. Measuring needs
// Linux: CPU time, context switches, I/O syscalls, memory and descriptors of
// other processes come from /proc, and the processes the bench starts are tied
// to it with Pdeathsig; those parts are in the _linux.go files, and Run
// refuses elsewhere.
//
// The bench runs the portier binary (Config gives its path) for every process
// it starts: `serve` for the broker, `__echo-backend` for the backends, and
// this package's hidden commands (ClientCommand, ProxyCommand, StallCommand)
// for the load generator, the proxy and the backend that never registers.
package bench
