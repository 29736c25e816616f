package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/portier/portier/servicedef"
)

func init() {
	register(command{name: "services", summary: "list service definitions, with validation errors", run: servicesCmd,
		help: "List the service definitions (<name>.toml) the broker reads, with the error of each invalid one.\n" +
			"It asks the running broker for its services directory, and falls back to this environment's\n" +
			"($XDG_CONFIG_HOME/portier/services, else ~/.config/portier/services) when no broker answers.\n" +
			"Exits 1 when a definition is invalid.",
		example: "portier services\nportier services --json | jq -r '.services[] | select(.valid | not) | .error'"})
}

// servicesJSON is `portier services --json`; its field names are a stable
// interface (docs/CLI.md).
type servicesJSON struct {
	ServicesDir string        `json:"services_dir"`
	Source      string        `json:"source"`
	BrokerPID   uint32        `json:"broker_pid"`
	Error       string        `json:"error"`
	Services    []serviceJSON `json:"services"`
}

type serviceJSON struct {
	Name       string   `json:"name"`
	File       string   `json:"file"`
	Valid      bool     `json:"valid"`
	Error      string   `json:"error"`
	Version    string   `json:"version"`
	Activation string   `json:"activation"`
	Handoff    bool     `json:"handoff"`
	Command    []string `json:"command"`
}

func servicesCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("services", stderr)
	dir := fs.String("services", defaultServicesDir(), "directory of service definitions (default: the running broker's, else this environment's)")
	socket := fs.String("socket", defaultSocket(), "broker socket to ask for its services directory (env PORTIER_SOCKET)")
	asJSON := fs.Bool("json", false, "print one JSON object (fields in docs/CLI.md)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	view := resolveServicesDir(fs, *dir, *socket)
	entries, err := servicedef.NewRegistry(view.dir, nil).List()
	bad := 0
	for _, e := range entries {
		if e.Err != nil {
			bad++
		}
	}
	if *asJSON {
		out := servicesJSON{ServicesDir: view.dir, Source: view.source, BrokerPID: view.status.GetBrokerPid(), Services: []serviceJSON{}}
		if err != nil {
			out.Error = err.Error()
		}
		for _, e := range entries {
			sj := serviceJSON{Name: e.Name, File: e.File, Valid: e.Err == nil, Command: []string{}}
			if e.Err != nil {
				sj.Error = e.Err.Error()
			} else {
				sj.Version, sj.Activation, sj.Handoff, sj.Command = e.Def.Version, string(e.Def.Activation), e.Def.Handoff, e.Def.Command
			}
			out.Services = append(out.Services, sj)
		}
		if code := writeJSON(stdout, stderr, out); code != exitOK {
			return code
		}
	} else {
		fmt.Fprintln(stdout, view.describe())
		if err == nil {
			printServices(stdout, view.dir, entries)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "portier services:", err)
		return exitFailure
	}
	if bad > 0 {
		return exitFailure
	}
	return exitOK
}

func printServices(stdout io.Writer, dir string, entries []servicedef.Entry) {
	if len(entries) == 0 {
		fmt.Fprintf(stdout, "no service definitions in %s\n", dir)
		return
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tVERSION\tACTIVATION\tHANDOFF\tCOMMAND")
	for _, e := range entries {
		if e.Err != nil {
			continue
		}
		d := e.Def
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%v\n", d.Name, d.Version, d.Activation, d.Handoff, d.Command)
	}
	tw.Flush()
	for _, e := range entries {
		if e.Err != nil {
			fmt.Fprintf(stdout, "invalid: %v\n", e.Err)
		}
	}
}
