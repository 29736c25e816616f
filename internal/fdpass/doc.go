// Package fdpass moves an open connection from one process to another, and
// nothing else.
//
// On Unix (Linux and macOS) a connected socket travels as SCM_RIGHTS
// ancillary data on a control connection, bound to the bytes of the frame
// that offers it (portier's HandoffOffer): [SendWithFD] writes the frame and
// the descriptor in one sendmsg, and a [Receiver] reads frames with recvmsg and
// hands each descriptor out together with the frame it arrived with. On
// Windows a handle is duplicated into the target process through a process
// handle the sender kept ([DuplicateIntoProcess]) and its value travels
// inside the frame; [CloseInProcess] reclaims one that the target provably
// did not adopt, and the target adopts it with [ConnFromHandle]. Other
// platforms get the same functions, which return [ErrUnsupported].
//
// On Windows the handle must be a pipe instance the sender never bound to
// an I/O completion port: a port binds the file object that the duplicate
// shares, so [ConnFromHandle], which binds it to this process's port
// (go-winio's), would fail with [ErrNotAdoptable]. The broker's listener
// (internal/ipc) reads its instances with event-based overlapped I/O for
// that reason.
//
// The package works on raw bytes. It knows the portier framing
// ([u8 0x01][u32 little-endian body length][body], body at most 16 MiB) only
// as far as it must to keep a descriptor next to its frame; it never decodes
// a body and imports no other portier package.
//
// # Why the receiver never reads across two frame starts
//
// A stream socket gives no guarantee about where one recvmsg ends, and the
// Linux kernel (checked on 6.18, see TestKernelGluesFDSegment) does glue the
// bytes of earlier fd-less writes in front of the segment that carries
// SCM_RIGHTS: one recvmsg can return three fd-less frames, then the offer,
// then the descriptor. A buffered reader that reads as much as it can would
// have to guess which of those frames the descriptor belongs to. Instead the
// Receiver bounds every recvmsg so that it contains at most one frame's
// first byte: a read that starts a frame asks only for the 5-byte header,
// and a body read asks for the rest of the body plus at most the next
// frame's 5-byte header. The kernel delivers a descriptor with the first
// byte of the sendmsg that carried it, and SendWithFD starts every sendmsg
// at a frame's first byte, so the one frame start inside the read is the
// descriptor's frame. A descriptor in a read that contains no frame start
// was not sent by SendWithFD; it is closed and the frame fails with
// [ErrFDMisaligned]. (A sender that starts an fd-carrying sendmsg in the
// middle of a frame is caught only when that frame's first byte was already
// read; otherwise the kernel may glue both into one read and the descriptor
// lands on that frame. SendWithFD never does this as long as writes on the
// connection are serialized.) The price is one extra recvmsg for a frame that arrives
// on an idle connection (header, then body); frames that arrive back to back
// cost one recvmsg each.
package fdpass
