//go:build !linux && !darwin && !windows

package fdcount

// dir is empty: this platform has no listing Open can rely on (FreeBSD's
// /dev/fd shows only 0-2 without fdescfs).
const dir = ""
