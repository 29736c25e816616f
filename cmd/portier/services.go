package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/portier/portier/servicedef"
)

func init() {
	register(command{name: "services", summary: "list service definitions, with validation errors", run: servicesCmd})
}

func servicesCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("services", stderr)
	dir := fs.String("services", defaultServicesDir(), "directory of service definitions")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	entries, err := servicedef.NewRegistry(*dir, nil).List()
	if err != nil {
		fmt.Fprintln(stderr, "portier services:", err)
		return exitFailure
	}
	if len(entries) == 0 {
		fmt.Fprintf(stdout, "no service definitions in %s\n", *dir)
		return exitOK
	}
	bad := 0
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tVERSION\tACTIVATION\tHANDOFF\tCOMMAND")
	for _, e := range entries {
		if e.Err != nil {
			bad++
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
	if bad > 0 {
		return exitFailure
	}
	return exitOK
}
