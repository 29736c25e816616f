package main

import (
	"flag"
	"fmt"

	pb "github.com/portier/portier/wire/portierv1"
)

// Where a command's services directory came from; the values appear in
// --json output ("source").
const (
	sourceFlag        = "flag"        // --services on the command line
	sourceBroker      = "broker"      // the running broker said where it reads definitions
	sourceEnvironment = "environment" // no broker answered: $XDG_CONFIG_HOME or ~/.config
)

// servicesView is the services directory a command looks at, and why.
type servicesView struct {
	dir    string
	source string
	status *pb.Status // the running broker's status; nil when none answered
	// why says, for sourceEnvironment, why the broker could not be asked.
	why string
}

// resolveServicesDir picks the directory `services` and `doctor` read:
// --services when given; else the running broker's, so that the command
// looks where the broker looks whatever this shell's environment says;
// else the environment's default, saying that no broker answered.
func resolveServicesDir(fs *flag.FlagSet, flagValue, socket string) servicesView {
	explicit := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "services" {
			explicit = true
		}
	})
	v := servicesView{dir: flagValue, source: sourceEnvironment}
	if socket != "" {
		st, err := brokerStatus(socket)
		switch {
		case err != nil:
			v.why = fmt.Sprintf("no broker answers on %s", socket)
		case st.GetServicesDir() == "":
			v.status = st
			v.why = fmt.Sprintf("the broker on %s (pid %d) does not report its services directory (an older portier)", socket, st.GetBrokerPid())
		default:
			v.status = st
			if !explicit {
				v.dir, v.source = st.GetServicesDir(), sourceBroker
			}
		}
	} else {
		v.why = "there is no broker socket path to ask"
	}
	if explicit {
		v.dir, v.source = flagValue, sourceFlag
	}
	return v
}

// describe is the line that tells a person which directory is shown.
func (v servicesView) describe() string {
	switch v.source {
	case sourceFlag:
		return fmt.Sprintf("services directory %s (from --services)", v.dir)
	case sourceBroker:
		return fmt.Sprintf("services directory %s (of the running broker, pid %d)", v.dir, v.status.GetBrokerPid())
	}
	return fmt.Sprintf("services directory %s (from this environment: %s; a broker started elsewhere may read another)", v.dir, v.why)
}
