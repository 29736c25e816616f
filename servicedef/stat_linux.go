package servicedef

import (
	"io/fs"
	"syscall"
	"time"
)

// sysStat returns inode, ctime and owner uid of fi.
func sysStat(fi fs.FileInfo) (ino uint64, ctime time.Time, uid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, time.Time{}, 0, false
	}
	return st.Ino, time.Unix(st.Ctim.Sec, st.Ctim.Nsec), int(st.Uid), true
}
