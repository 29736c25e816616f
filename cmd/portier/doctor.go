package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/portier/portier/servicedef"
)

func init() {
	register(command{name: "doctor", summary: "check the setup and say what to fix", run: doctorCmd,
		help: "Check the broker's socket path and directory, whether a broker answers, the services directory\n" +
			"and every definition in it, and the descriptor limit; say what is wrong and the command that fixes it.\n" +
			"It checks the running broker's services directory when one answers. Exits 1 when something needs fixing.",
		example: "portier doctor\nportier doctor --json | jq '.checks[] | select(.status == \"problem\")'"})
}

// Check statuses, as printed and in --json.
const (
	checkOK      = "ok"
	checkNote    = "note"
	checkProblem = "problem"
)

// doctorCheck is one finding; doctorJSON is `portier doctor --json`. Field
// names and check ids are a stable interface (docs/CLI.md).
type doctorCheck struct {
	Check   string `json:"check"`
	Status  string `json:"status"`
	Message string `json:"message"`
	Fix     string `json:"fix"`
}

type doctorJSON struct {
	OK          bool          `json:"ok"`
	Problems    int           `json:"problems"`
	Socket      string        `json:"socket"`
	ServicesDir string        `json:"services_dir"`
	Checks      []doctorCheck `json:"checks"`
}

type doctorReport struct{ doctorJSON }

func (r *doctorReport) add(check, status, fix, format string, a ...any) {
	r.Checks = append(r.Checks, doctorCheck{Check: check, Status: status, Message: fmt.Sprintf(format, a...), Fix: fix})
	if status == checkProblem {
		r.Problems++
	}
}

func (r *doctorReport) text(w io.Writer) {
	for _, c := range r.Checks {
		switch c.Status {
		case checkOK:
			fmt.Fprintf(w, "ok       %s\n", c.Message)
		case checkNote:
			fmt.Fprintf(w, "note     %s\n", c.Message)
		default:
			fmt.Fprintf(w, "PROBLEM  %s\n         fix: %s\n", c.Message, c.Fix)
		}
	}
	if r.Problems > 0 {
		fmt.Fprintf(w, "\n%d problem(s) found\n", r.Problems)
	}
}

// doctorCmd checks the socket path and directory, the broker, the service
// definitions and the descriptor limit, printing one line per check and a
// fix for each problem. It exits 1 when something needs fixing.
func doctorCmd(args []string, stdout, stderr io.Writer) int {
	flags := newFlagSet("doctor", stderr)
	socket := flags.String("socket", defaultSocket(), "broker socket (env PORTIER_SOCKET)")
	services := flags.String("services", defaultServicesDir(), "directory of service definitions (default: the running broker's, else this environment's)")
	asJSON := flags.Bool("json", false, "print one JSON object (fields and check ids in docs/CLI.md)")
	if code, ok := parseFlags(flags, args); !ok {
		return code
	}
	if !needSocket("doctor", *socket, stderr) {
		return exitUsage
	}
	socketFromFlag := false
	flags.Visit(func(f *flag.Flag) {
		if f.Name == "socket" {
			socketFromFlag = true
		}
	})
	r := &doctorReport{doctorJSON{Socket: *socket}}
	checkEndpoint(r, socketFromFlag)

	view := resolveServicesDir(flags, *services, *socket)
	r.ServicesDir = view.dir
	if view.status != nil {
		r.add("broker", checkOK, "", "broker pid %d answers on %s with %d backend(s)", view.status.GetBrokerPid(), *socket, len(view.status.GetBackends()))
	} else {
		r.add("broker", checkNote, "", "no broker answers on %s; clients with client.AutoStart start one, as does 'portier serve' or 'portier install'", *socket)
	}
	checkServices(r, view)
	checkLimits(r)

	r.OK = r.Problems == 0
	if *asJSON {
		if code := writeJSON(stdout, stderr, r.doctorJSON); code != exitOK {
			return code
		}
	} else {
		r.text(stdout)
	}
	if r.Problems > 0 {
		return exitFailure
	}
	return exitOK
}

// checkServices checks the services directory and each definition in it.
func checkServices(r *doctorReport, view servicesView) {
	if view.source == sourceEnvironment {
		r.add("services_dir", checkNote, "", "%s", view.describe())
	} else {
		r.add("services_dir", checkOK, "", "%s", view.describe())
	}
	entries, err := servicedef.NewRegistry(view.dir, nil).List()
	var de *servicedef.DirError
	switch {
	case errors.As(err, &de):
		what, fix := servicesDirFix(de)
		r.add("services_dir", checkProblem, fix, "services directory %s is refused: %s", view.dir, what)
	case err != nil:
		r.add("services_dir", checkProblem, "make sure you can read "+view.dir, "services directory %s cannot be read: %v", view.dir, err)
	case len(entries) == 0:
		r.add("services_dir", checkNote, "", "no service definitions in %s; add <name>.toml files (see README)", view.dir)
	}
	for _, e := range entries {
		if e.Err != nil {
			what, fix := definitionFix(e)
			r.add("service", checkProblem, fix, "%s", what)
			continue
		}
		exe := e.Def.Command[0]
		if fi, err := os.Stat(exe); err != nil || !runnable(fi) {
			r.add("service", checkProblem, "fix command[0] in "+e.Def.File, "service %s: command %s is not an executable file", e.Name, exe)
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
			r.add("service", checkProblem, ee.Fix, "service %s: the broker will not start %s %s (BACKEND_SPAWN_FAILED)", e.Name, where, ee.Reason)
			continue
		} else if err != nil {
			r.add("service", checkProblem, "fix command[0] in "+e.Def.File, "service %s: command %s: %v", e.Name, exe, err)
			continue
		}
		r.add("service", checkOK, "", "service %s@%s (%s)", e.Name, e.Def.Version, exe)
	}
}

// servicesDirFix splits a refused services directory into the problem and
// its fix.
func servicesDirFix(de *servicedef.DirError) (what, fix string) {
	fi, _ := os.Lstat(de.Dir)
	switch de.Problem {
	case servicedef.ProblemSymlink:
		fix = "point --services (the broker's and this command's) at the directory itself"
		if real, err := filepath.EvalSymlinks(de.Dir); err == nil {
			fix = "point --services (the broker's and this command's) at the real directory " + real
		}
		return "it is a symbolic link, so whoever can change the link chooses what the broker runs", fix
	case servicedef.ProblemNotDir:
		return "it is not a directory", fmt.Sprintf("move %s away and create a directory there (mkdir -m 700 %s)", de.Dir, de.Dir)
	case servicedef.ProblemNotOwner:
		owner := "another user"
		if uid, ok := fileOwner(fi); ok {
			owner = fmt.Sprintf("uid %d", uid)
		}
		return fmt.Sprintf("it belongs to %s, who could choose the programs the broker runs as you", owner),
			"use a directory you own (--services), or have root chown it to you"
	case servicedef.ProblemBadMode:
		mode := "group- or world-writable"
		if fi != nil {
			mode = fmt.Sprintf("%04o", fi.Mode().Perm())
		}
		return fmt.Sprintf("its mode %s lets group or others add definitions, and so choose the programs the broker runs as you", mode), "chmod go-w " + de.Dir
	}
	return de.Reason, "use a directory you own with --services"
}

// definitionFix splits an invalid definition into the problem and its fix.
// A definition others can change is fixed with chmod or a copy, not by
// editing it; anything else is fixed in the file.
func definitionFix(e servicedef.Entry) (what, fix string) {
	var se *servicedef.Error
	if !errors.As(e.Err, &se) {
		return e.Err.Error(), "check that you can read " + e.File
	}
	if fi, err := os.Stat(e.File); err == nil && fi.Mode().IsRegular() {
		if uid, ok := fileOwner(fi); ok && uid != os.Geteuid() && uid != 0 {
			return fmt.Sprintf("%s belongs to uid %d, who could choose the program the broker runs as you", e.File, uid),
				fmt.Sprintf("replace it with a copy you own: cp %s %s.new && mv %s.new %s", e.File, e.File, e.File, e.File)
		}
		if m := fi.Mode().Perm(); m&0o022 != 0 {
			return fmt.Sprintf("%s has mode %04o: group or others can change it, and so choose the program the broker runs as you", e.File, m),
				"chmod go-w " + e.File
		}
	}
	if se.Line > 0 {
		return se.Error(), fmt.Sprintf("edit line %d of %s; the broker reads it again at the next Hello", se.Line, e.File)
	}
	return se.Error(), fmt.Sprintf("edit %s; the broker reads it again at the next Hello", e.File)
}
