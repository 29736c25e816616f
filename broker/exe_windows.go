package broker

import "os"

// statExe stamps the program at path by size and modification time (a
// Windows build writes the file anew, which changes both).
func statExe(path string) (exeStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return exeStamp{}, err
	}
	return exeStamp{Size: fi.Size(), Mtime: fi.ModTime().UnixNano()}, nil
}
