//go:build unix

package servicedef

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// unsafePerm reports why fi (a services directory or a definition file at
// path) would let someone other than the current user choose the programs
// the broker runs: owned by another user (root is trusted, as it could do
// anything anyway), or writable by group or others.
// selfEUID is read once: it does not change, and the check runs on every
// lookup (every Hello).
var selfEUID = os.Geteuid()

func unsafePerm(fi fs.FileInfo, path, what string) (problem Problem, reason string) {
	if owner, ok := ownerUID(fi); ok {
		if uid := selfEUID; owner != uid && owner != 0 {
			return ProblemNotOwner, fmt.Sprintf("owned by uid %d, not by you (uid %d) or root, so its owner decides what the broker runs as you; chown it to yourself or use a path you own", owner, uid)
		}
	}
	if m := fi.Mode().Perm(); m&0o022 != 0 {
		return ProblemBadMode, fmt.Sprintf("mode %04o lets group or others change %s, and so choose the programs the broker runs as you; fix with: chmod go-w %s", m, what, path)
	}
	return "", ""
}

// openNonblock makes opening a definition that turned into a FIFO return at
// once instead of waiting for a writer; reads of regular files ignore it.
const openNonblock = syscall.O_NONBLOCK
