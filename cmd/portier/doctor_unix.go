//go:build unix

package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/portier/portier/internal/ipc"
	"github.com/portier/portier/servicedef"
	pb "github.com/portier/portier/wire/portierv1"
	"golang.org/x/sys/unix"
)

func init() {
	register(command{name: "doctor", summary: "check the setup and say what to fix", run: doctorCmd})
}

// minNoFile is the descriptor limit below which a busy broker runs into
// FD_PRESSURE: each pending handoff holds a descriptor.
const minNoFile = 4096

// doctorCmd checks the socket directory, the broker, the service
// definitions and the descriptor limit, printing one line per check and a
// fix for each problem. It exits 1 when something needs fixing.
func doctorCmd(args []string, stdout, stderr io.Writer) int {
	flags := newFlagSet("doctor", stderr)
	socket := flags.String("socket", defaultSocket(), "broker socket (env PORTIER_SOCKET)")
	services := flags.String("services", defaultServicesDir(), "directory of service definitions")
	if code, ok := parseFlags(flags, args); !ok {
		return code
	}
	if !needSocket("doctor", *socket, stderr) {
		return exitUsage
	}
	problems := 0
	ok := func(format string, a ...any) { fmt.Fprintf(stdout, "ok       "+format+"\n", a...) }
	bad := func(what, fix string) {
		problems++
		fmt.Fprintf(stdout, "PROBLEM  %s\n         fix: %s\n", what, fix)
	}
	note := func(format string, a ...any) { fmt.Fprintf(stdout, "note     "+format+"\n", a...) }

	dir := filepath.Dir(*socket)
	switch err := ipc.CheckPrivateDir(dir); {
	case errors.Is(err, fs.ErrNotExist):
		note("socket directory %s does not exist yet; portier serve creates it (0700)", dir)
	case err != nil:
		var de *ipc.DirError
		fix := "remove it and let portier serve create it, or point --socket elsewhere"
		if errors.As(err, &de) && de.Detail != "" {
			fix = de.Detail
		}
		bad(fmt.Sprintf("socket directory %s is not private: %v", dir, err), fix)
	default:
		ok("socket directory %s is private", dir)
	}

	resp, err := adminCall(*socket, &pb.AdminRequest{Verb: &pb.AdminRequest_Status{Status: &pb.StatusRequest{}}})
	if err != nil {
		note("no broker answers on %s; clients with client.AutoStart start one, or run portier serve", *socket)
	} else {
		st := resp.GetStatus()
		ok("broker pid %d answers on %s with %d backend(s)", st.GetBrokerPid(), *socket, len(st.GetBackends()))
	}

	entries, err := servicedef.NewRegistry(*services, nil).List()
	switch {
	case err != nil:
		// The fix depends on the problem: chmod does nothing for a
		// symlinked or foreign directory.
		fix := "make it yours and not writable by others: chmod go-w " + *services
		var de *servicedef.DirError
		if errors.As(err, &de) && de.Reason != "" {
			fix = de.Reason
		}
		bad(fmt.Sprintf("services directory %s: %v", *services, err), fix)
	case len(entries) == 0:
		note("no service definitions in %s; add <name>.toml files (see README)", *services)
	}
	for _, e := range entries {
		if e.Err != nil {
			bad(e.Err.Error(), "edit the file; portier picks up the change at the next Hello")
			continue
		}
		exe := e.Def.Command[0]
		if fi, err := os.Stat(exe); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			bad(fmt.Sprintf("service %s: command %s is not an executable file", e.Name, exe), "fix command[0] in "+e.Def.File)
			continue
		}
		// The broker refuses to start a program someone else could
		// replace; say so before a client finds out.
		var ee *servicedef.ExecError
		if err := servicedef.CheckExecutable(exe); errors.As(err, &ee) {
			where := ee.Path
			if where != exe {
				where = exe + ": " + where
			}
			bad(fmt.Sprintf("service %s: the broker will not start %s %s (BACKEND_SPAWN_FAILED)", e.Name, where, ee.Reason), ee.Fix)
			continue
		} else if err != nil {
			bad(fmt.Sprintf("service %s: command %s: %v", e.Name, exe, err), "fix command[0] in "+e.Def.File)
			continue
		}
		ok("service %s@%s (%s)", e.Name, e.Def.Version, exe)
	}

	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil {
		if lim.Cur < minNoFile {
			bad(fmt.Sprintf("descriptor limit %d is low for a broker (each pending connection holds one)", lim.Cur),
				fmt.Sprintf("raise it (ulimit -n %d) in the shell or unit that starts portier serve", minNoFile))
		} else {
			ok("descriptor limit %d", lim.Cur)
		}
	}
	if problems > 0 {
		fmt.Fprintf(stdout, "\n%d problem(s) found\n", problems)
		return exitFailure
	}
	return exitOK
}
