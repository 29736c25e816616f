// Package handletable reads the system's table of open handles on Windows
// (NtQuerySystemInformation, SystemExtendedHandleInformation): the one
// place that knows its layout. The tests' leak checks (fdcount) count and
// list this process's handles with it. It exists because Wine 8 answers
// GetProcessHandleCount with 0 for every process. On other platforms it is
// empty.
package handletable
