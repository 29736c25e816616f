// Package soak owns portier's chaos soak: real processes under load while
// backends are killed and the broker is restarted, with every connection
// attempt classified and the broker's descriptors compared before and after.
//
// Run builds nothing itself. It is given a portier binary (run as `portier
// serve` on a private temporary runtime and services directory, the code a
// user runs) and a backend command: a program whose main calls Backend, the
// echo backend of this package, written with the backend package exactly as
// the README's accept loop shows. The soak's test re-executes its own test
// binary in that role.
//
// # What a client does
//
// Config.Clients goroutines dial the "echo" service with client.Dial,
// rotating between the handoff route (NoHelloSkip: a Hello every time), the
// default options (the hello-skip fast path, the direct route once the
// process knows the backend) and EarlyData (the first request travels with
// the Hello, NoHelloSkip), and make a few round
// trips on each connection. A request is a frame: magic, sequence number,
// length, CRC-32 and a random payload. The backend checks every field and
// echoes the frame, so a reply that is not the exact bytes sent is corrupt,
// whichever side broke it. Every attempt runs under one deadline
// (Config.HungAfter); one that reaches it is hung, and a worker that does not
// come back at all is counted hung when the soak ends rather than waited for.
// A few long-lived connections to the "steady" service (short idle_timeout,
// never killed) send one request a second and must not be cut.
//
// # Chaos
//
// Every Config.KillEvery the backend of "echo" (its pid from `portier
// status`, checked against /proc before the signal) is SIGKILLed; every
// Config.RestartEvery the broker is stopped, alternately by SIGTERM and
// SIGKILL, and a new `portier serve` is started after Config.BrokerDownFor.
// The soak keeps the windows in which no broker listened, so that
// ErrBrokerUnavailable can be judged: outside those windows it is a
// violation. The soak process makes itself a child subreaper and reaps the
// backends orphaned by a killed broker, as an init would, so that a dead
// backend never lingers as a zombie that the broker could take for alive.
//
// # Results
//
// Report has the counts, a table (Report.WriteTable), JSON, and
// Report.Violations: the required results of a healthy broker, each either
// met or failed with its number of occurrences.
//
// The soak reads /proc, so Run exists on Linux only.
package soak
