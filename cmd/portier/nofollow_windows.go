//go:build windows

package main

// oNoFollow: Windows has no O_NOFOLLOW; the broker does not run there yet.
const oNoFollow = 0
