// Package handletable reads the system's table of open handles on Windows
// (NtQuerySystemInformation, SystemExtendedHandleInformation): the one
// place that knows its layout. ipc counts a process's handles with it for
// diagnostics, and the tests' leak checks (fdcount, ipc) count and list
// their own. It exists because Wine 8 answers GetProcessHandleCount with 0
// for every process. On other platforms it is empty.
package handletable
