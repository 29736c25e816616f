//go:build !linux && !darwin

package servicedef

import "io/fs"

// sysStat has no inode or ctime to offer here; size and mtime (and the racy
// re-read) still detect edits.
func sysStat(fs.FileInfo) (sysInfo, bool) { return sysInfo{}, false }
