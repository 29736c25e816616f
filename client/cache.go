package client

import "sync"

// cacheKey identifies a hello-skip entry. The broker socket is part of the
// key: two brokers (tests, a custom Socket) run different backends.
type cacheKey struct{ socket, service, version string }

// cacheEntry is what a Negotiated taught us about the backend.
type cacheEntry struct{ pipe, daemonVersion string }

// skipCache is the per-process hello-skip cache (cacheKey -> cacheEntry).
// It only grows by the distinct (socket, service, version) triples this
// process dials without NoHelloSkip.
var skipCache sync.Map
