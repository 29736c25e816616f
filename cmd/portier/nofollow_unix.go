//go:build unix

package main

import "syscall"

// oNoFollow makes opening a log file fail on a symbolic link, so a link
// planted at the path cannot redirect the broker's writes.
const oNoFollow = syscall.O_NOFOLLOW
