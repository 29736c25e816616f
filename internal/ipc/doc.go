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
//
// # Windows
//
// The broker's endpoint is a named pipe served by a Listener
// (ListenSingleton). Its connections are handed to backends with
// DuplicateHandle, and that shapes everything about it: an I/O completion
// port binds a pipe instance's file object, which every duplicate shares,
// so an instance the broker had read through a completion port (go-winio's
// listener binds every instance it accepts) could never be bound to the
// backend's port; rebinding (FileReplaceCompletionInformation) needs
// Windows 8.1 and Wine 8 lacks it. So the Listener creates overlapped
// instances (byte mode, remote clients rejected, an owner-only protected
// DACL), waits for clients with event-based ConnectNamedPipe, and its
// PipeConn reads and writes with event-based overlapped I/O, enforcing
// deadlines with CancelIoEx and always waiting for the kernel to finish
// before a buffer is reused. Reads never ask for more than the caller
// wants, so bytes a client pipelines after its Hello stay in the pipe for
// the backend.
//
// One broker per user: ListenSingleton holds a named mutex derived from the
// pipe name and probes the pipe for a live server. It does not use
// FILE_FLAG_FIRST_PIPE_INSTANCE, because instances held by backends keep
// the pipe name alive across a broker restart.
//
// Identity: CheckPeer checks that the process at the other end of a pipe
// runs as this process's user (the token user SID of the peer's process,
// found from GetNamedPipeClientProcessId or GetNamedPipeServerProcessId).
// A ProcessHandle keeps a process open from the moment it was started
// (HoldProcess) or re-found with a matching start time (OpenProcessHandle),
// so handles are duplicated into that process and never into whatever
// holds its pid later.
package ipc
