package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/portier/portier/internal/logtail"
	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

func init() {
	register(command{name: "stop", summary: "stop a service's backends (they finish their connections first)", run: stopCmd, synopsis: "SERVICE [flags]",
		help: "Ask every backend of SERVICE to quiesce: it takes no new connections and exits once the connections\n" +
			"it is serving have closed. The next client starts the service again.",
		example: "portier stop echo\nportier stop echo --json | jq '.stopped[].pid'"})
	register(command{name: "restart", summary: "start a service's backend anew (the old one finishes its connections)", run: restartCmd, synopsis: "SERVICE [flags]",
		help: "Stop SERVICE's backends as 'portier stop' does and start a new one from the current definition at once,\n" +
			"waiting until it registered. New clients go to the new backend; the old one exits once its connections\n" +
			"have closed. Exits 1 when the new backend did not start, saying why.",
		example: "portier restart echo\nportier restart echo --timeout 2m"})
	register(command{name: "logs", summary: "show a backend's output log (-f to follow it)", run: logsCmd, synopsis: "SERVICE [flags]",
		help: "Print the output log of SERVICE's backend (what it wrote to stdout and stderr), as kept by the broker:\n" +
			"the version the definition names, unless --version says otherwise. With -f, keep printing what is\n" +
			"written until interrupted, across the broker's rotations of the log. The older part of a full log is\n" +
			"in the same file with .1 appended.",
		example: "portier logs echo\nportier logs echo -n 20 -f"})
}

// serviceArg takes the SERVICE argument of a command that also accepts
// flags after it (as dial does), and parses the flags.
func serviceArg(fs *flag.FlagSet, args []string) (string, int, bool) {
	var service string
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		service, args = args[0], args[1:]
	}
	maxArgs := 1
	if service != "" {
		maxArgs = 0
	}
	if code, ok := parseArgs(fs, args, maxArgs); !ok {
		return "", code, false
	}
	if service == "" && fs.NArg() > 0 {
		service = fs.Arg(0)
	}
	if service == "" {
		fs.Usage()
		return "", exitUsage, false
	}
	if !wire.ValidServiceName(service) {
		fmt.Fprintf(fs.Output(), "%s: %q is not a service name ([a-z0-9-]{1,64})\n", fs.Name(), service)
		return "", exitUsage, false
	}
	return service, 0, true
}

// actionJSON is `portier stop --json` and `portier restart --json`. Its
// field names are a stable interface, documented in docs/CLI.md.
type actionJSON struct {
	Service   string        `json:"service"`
	Stopped   []backendJSON `json:"stopped"`
	Started   backendJSON   `json:"started"`
	Error     string        `json:"error"`
	ErrorCode string        `json:"error_code"`
	Log       string        `json:"log"`
}

func toActionJSON(res *pb.ServiceActionResult) actionJSON {
	out := actionJSON{Service: res.GetServiceName(), Stopped: []backendJSON{}, Started: backendJSON{LiveConnections: -1}}
	for _, b := range res.GetStopped() {
		out.Stopped = append(out.Stopped, toBackendJSON(b))
	}
	if b := res.GetStarted(); b != nil {
		out.Started = toBackendJSON(b)
	}
	if r := res.GetStartRefused(); r != nil {
		out.Error, out.ErrorCode, out.Log = r.GetReason(), wire.ErrorCode(r.GetCode()).String(), r.GetDetails()["log"]
	}
	return out
}

// printStopped says which backends were asked to stop.
func printStopped(w io.Writer, res *pb.ServiceActionResult) {
	if len(res.GetStopped()) == 0 {
		fmt.Fprintf(w, "%s: no backend was running\n", res.GetServiceName())
		return
	}
	for _, b := range res.GetStopped() {
		live := ""
		if b.LiveConnections != nil && b.GetLiveConnections() > 0 {
			live = fmt.Sprintf(", serving %d connections", b.GetLiveConnections())
		}
		fmt.Fprintf(w, "%s: asked pid %d (%s%s) to stop; it exits once its connections have closed\n",
			res.GetServiceName(), b.GetPid(), b.GetVersion(), live)
	}
}

func stopCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("stop", stderr)
	socket := fs.String("socket", defaultSocket(), "broker socket (env PORTIER_SOCKET)")
	asJSON := fs.Bool("json", false, "print one JSON object (fields in docs/CLI.md)")
	service, code, ok := serviceArg(fs, args)
	if !ok {
		return code
	}
	if !needSocket("stop", *socket, stderr) {
		return exitUsage
	}
	resp, err := adminCall(*socket, &pb.AdminRequest{Verb: &pb.AdminRequest_Stop{Stop: &pb.StopRequest{ServiceName: service}}})
	if err != nil {
		fmt.Fprintln(stderr, "portier stop:", err)
		return exitFailure
	}
	res := resp.GetServiceAction()
	if res == nil {
		fmt.Fprintln(stderr, "portier stop: the broker's answer carries no result")
		return exitFailure
	}
	if *asJSON {
		return writeJSON(stdout, stderr, toActionJSON(res))
	}
	printStopped(stdout, res)
	return exitOK
}

func restartCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("restart", stderr)
	socket := fs.String("socket", defaultSocket(), "broker socket (env PORTIER_SOCKET)")
	asJSON := fs.Bool("json", false, "print one JSON object (fields in docs/CLI.md)")
	timeout := fs.Duration("timeout", time.Minute, "bound on the wait for the broker's answer, which comes once the new backend registered (or failed to)")
	service, code, ok := serviceArg(fs, args)
	if !ok {
		return code
	}
	if !needSocket("restart", *socket, stderr) {
		return exitUsage
	}
	resp, err := adminCallWithin(*socket, &pb.AdminRequest{Verb: &pb.AdminRequest_Restart{Restart: &pb.RestartRequest{ServiceName: service}}}, *timeout)
	if err != nil {
		fmt.Fprintln(stderr, "portier restart:", err)
		return exitFailure
	}
	res := resp.GetServiceAction()
	if res == nil {
		fmt.Fprintln(stderr, "portier restart: the broker's answer carries no result")
		return exitFailure
	}
	status := exitOK
	if res.GetStartRefused() != nil {
		status = exitFailure
	}
	if *asJSON {
		if code := writeJSON(stdout, stderr, toActionJSON(res)); code != exitOK {
			return code
		}
		return status
	}
	if len(res.GetStopped()) > 0 {
		printStopped(stdout, res)
	}
	if r := res.GetStartRefused(); r != nil {
		fmt.Fprintf(stderr, "portier restart: %s did not start (%s): %s\n", service, wire.ErrorCode(r.GetCode()), r.GetReason())
		if tail := r.GetDetails()["stderr_tail"]; tail != "" {
			fmt.Fprintf(stderr, "its output ends:\n%s\n", tail)
		}
		return status
	}
	b := res.GetStarted()
	fmt.Fprintf(stdout, "%s: started pid %d (%s)\n", service, b.GetPid(), b.GetVersion())
	return status
}

// logsContext is the context `portier logs -f` follows under: canceled by
// SIGINT or SIGTERM (tests replace it).
var logsContext = func() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func logsCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("logs", stderr)
	socket := fs.String("socket", defaultSocket(), "broker socket (env PORTIER_SOCKET)")
	version := fs.String("version", "", "the version whose log to show (default: the one the definition names)")
	follow := fs.Bool("f", false, "keep printing what is written to the log until interrupted")
	lines := fs.Int("n", -1, "print only the last N lines (default: the whole log)")
	poll := fs.Duration("poll", logtail.DefaultPoll, "with -f, how often to look for new output")
	service, code, ok := serviceArg(fs, args)
	if !ok {
		return code
	}
	if *version != "" && !wire.ValidVersion(*version) {
		fmt.Fprintf(stderr, "portier logs: --version %q is not of the form MAJOR.MINOR.PATCH[-prerelease]\n", *version)
		return exitUsage
	}
	if !needSocket("logs", *socket, stderr) {
		return exitUsage
	}
	resp, err := adminCall(*socket, &pb.AdminRequest{Verb: &pb.AdminRequest_Logs{Logs: &pb.LogsRequest{ServiceName: service, Version: *version}}})
	if err != nil {
		fmt.Fprintln(stderr, "portier logs:", err)
		return exitFailure
	}
	lf := resp.GetLogFile()
	if lf == nil || lf.GetPath() == "" {
		fmt.Fprintln(stderr, "portier logs: the broker's answer carries no log file")
		return exitFailure
	}
	running := "not running"
	if lf.GetPid() != 0 {
		running = fmt.Sprintf("pid %d", lf.GetPid())
	}
	fmt.Fprintf(stderr, "portier logs: %s@%s (%s): %s\n", lf.GetServiceName(), lf.GetVersion(), running, lf.GetPath())
	end, err := printLog(stdout, lf.GetPath(), *lines)
	if err != nil && !(*follow && errors.Is(err, os.ErrNotExist)) {
		if errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(stderr, "portier logs: %s@%s has written no output yet (%s does not exist)\n", lf.GetServiceName(), lf.GetVersion(), lf.GetPath())
		} else {
			fmt.Fprintln(stderr, "portier logs:", err)
		}
		return exitFailure
	}
	if !*follow {
		return exitOK
	}
	ctx, stop := logsContext()
	defer stop()
	if err := logtail.Follow(ctx, lf.GetPath(), end, stdout, *poll); err != nil {
		fmt.Fprintln(stderr, "portier logs:", err)
		return exitFailure
	}
	return exitOK
}

// printLog writes the log at path (its last n lines when n >= 0) and
// returns the offset it read up to, where following starts. It reads the
// file once, through one handle, so nothing appended meanwhile is printed
// twice by -f.
func printLog(w io.Writer, path string, n int) (int64, error) {
	f, err := logtail.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := fi.Size()
	if n >= 0 {
		text, err := logtail.LinesAt(f, size, n, size)
		if err != nil {
			return 0, err
		}
		if text != "" {
			if _, err := io.WriteString(w, strings.TrimSuffix(text, "\n")+"\n"); err != nil {
				return 0, err
			}
		}
		return size, nil
	}
	_, err = io.Copy(w, io.NewSectionReader(f, 0, size))
	return size, err
}
