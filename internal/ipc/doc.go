// Package ipc owns portier's local endpoints: where the broker's endpoint
// lives (SocketPath, the one lookup for clients and the CLI), the private
// directory that protects it, listening and dialing on Unix domain sockets
// and Windows named pipes, the singleton bind that keeps one broker per
// user, and the facts the kernel tells us about the peer of a connection
// (credentials, process start time, executable). CheckPeer is the one answer
// to "is the peer of this connection me?" for the broker, backends, the
// client and the CLI; PeerGuard is its logging form for servers.
//
// It knows nothing about frames, services or handoffs; moving a connection
// between processes is internal/fdpass's job.
//
// Security model on Unix: every endpoint lives in a directory that is owned by
// the user, is not a symlink and has mode 0700 (EnsurePrivateDir). That
// directory, not the socket's own mode, is what keeps other users out: a socket
// is bound first and chmod'ed to 0600 right after, and the short window in
// between is harmless because nobody else can traverse the directory. The
// alternative, binding under a restrictive umask, would change the umask of the
// whole process while other goroutines create files.
package ipc
