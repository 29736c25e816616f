//go:build !linux && !darwin

package servicedef

import (
	"io/fs"
	"time"
)

// sysStat: no inode, ctime or owner here; size and mtime still detect edits,
// and directory ownership is not checked.
func sysStat(fs.FileInfo) (ino uint64, ctime time.Time, uid int, ok bool) {
	return 0, time.Time{}, 0, false
}
