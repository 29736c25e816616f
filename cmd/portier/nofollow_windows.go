//go:build windows

package main

// oNoFollow: Windows has no O_NOFOLLOW; --log-file opens the path as given.
const oNoFollow = 0
