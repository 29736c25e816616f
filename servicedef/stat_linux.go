package servicedef

import (
	"io/fs"
	"syscall"
	"time"
)

func sysStat(fi fs.FileInfo) (sysInfo, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return sysInfo{}, false
	}
	return sysInfo{dev: uint64(st.Dev), ino: st.Ino, ctime: time.Unix(st.Ctim.Sec, st.Ctim.Nsec)}, true
}

func ownerUID(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
