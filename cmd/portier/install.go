package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

func init() {
	register(command{name: "install", summary: "run the broker from your login session's service manager (systemd, launchd)", run: installCmd,
		help: "Write and enable the user-level unit that runs the broker for you: systemd user units with socket\n" +
			"activation on Linux, a LaunchAgent on macOS. Nothing needs root. It prints each file it writes and\n" +
			"each command it runs; --dry-run prints them without doing anything, --uninstall undoes it.",
		example: "portier install --dry-run\nportier install\nportier install --uninstall"})
}

// installCommandTimeout bounds each systemctl or launchctl run.
const installCommandTimeout = 30 * time.Second

// installFile is one file an installation writes.
type installFile struct {
	path string
	body string
}

// installPlan is what install (or uninstall) does, in order: stop a broker
// that would hold the socket's lock, write files, run commands, remove
// files. Commands marked mayFail are cleanup whose failure changes nothing
// (unloading an agent that is not loaded).
type installPlan struct {
	manager     string // "systemd" or "launchd", for messages
	stopPID     int    // a running broker to stop first; 0 for none
	write       []installFile
	commands    []installCommand
	remove      []string
	afterRemove []installCommand
	notes       []string
}

type installCommand struct {
	args    []string
	mayFail bool
}

// installOptions are the resolved inputs of a plan.
type installOptions struct {
	binary      string
	socket      string // resolved socket path (what clients use)
	socketIsXDG bool   // socket is $XDG_RUNTIME_DIR/portier/broker.sock
	services    string
	home        string
	configHome  string // $XDG_CONFIG_HOME or ~/.config
	uid         int
	uninstall   bool
	runningPID  int // a broker answering on socket, 0 if none
}

func installCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("install", stderr)
	dryRun := fs.Bool("dry-run", false, "print the files and commands without writing or running anything")
	uninstall := fs.Bool("uninstall", false, "disable the unit and remove its files")
	binary := fs.String("binary", "", "portier executable the unit runs (default: this executable)")
	services := fs.String("services", defaultServicesDir(), "directory of service definitions the broker reads")
	socket := fs.String("socket", defaultSocket(), "broker socket (env PORTIER_SOCKET)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if err := installSupported(); err != nil {
		fmt.Fprintln(stderr, "portier install:", err)
		return exitFailure
	}
	if !needSocket("install", *socket, stderr) {
		return exitUsage
	}
	opts, err := resolveInstallOptions(*binary, *socket, *services, *uninstall)
	if err != nil {
		fmt.Fprintln(stderr, "portier install:", err)
		return exitFailure
	}
	plan, err := platformInstallPlan(opts)
	if err != nil {
		fmt.Fprintln(stderr, "portier install:", err)
		return exitFailure
	}
	if *dryRun {
		printPlan(stdout, plan)
		return exitOK
	}
	if err := executePlan(stdout, stderr, plan); err != nil {
		fmt.Fprintln(stderr, "portier install:", err)
		return exitFailure
	}
	return exitOK
}

// resolveInstallOptions fills in what the units need: an executable that
// will still exist after this command (not a `go run` build), absolute
// paths, and whether a broker runs now.
func resolveInstallOptions(binary, socket, services string, uninstall bool) (installOptions, error) {
	o := installOptions{socket: socket, uninstall: uninstall, uid: os.Getuid()}
	home, err := os.UserHomeDir()
	if err != nil {
		return o, fmt.Errorf("no home directory: %w", err)
	}
	o.home = home
	o.configHome = os.Getenv("XDG_CONFIG_HOME")
	if o.configHome == "" || !filepath.IsAbs(o.configHome) {
		o.configHome = filepath.Join(home, ".config")
	}
	if xdg := os.Getenv("XDG_RUNTIME_DIR"); xdg != "" && filepath.IsAbs(xdg) &&
		filepath.Clean(socket) == filepath.Join(xdg, "portier", "broker.sock") {
		o.socketIsXDG = true
	}
	if o.services, err = filepath.Abs(services); err != nil {
		return o, err
	}
	if o.socket, err = filepath.Abs(socket); err != nil {
		return o, err
	}
	if uninstall {
		return o, nil
	}
	if binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return o, fmt.Errorf("cannot tell where this executable is (%w); pass --binary", err)
		}
		if strings.Contains(exe, string(filepath.Separator)+"go-build") {
			return o, fmt.Errorf("this portier was built by 'go run' into %s, which is removed when it exits; install a binary first (go install github.com/portier/portier/cmd/portier@latest) and run that, or pass --binary", filepath.Dir(exe))
		}
		binary = exe
	}
	if binary, err = filepath.Abs(binary); err != nil {
		return o, err
	}
	if resolved, err := filepath.EvalSymlinks(binary); err == nil {
		binary = resolved
	}
	if fi, err := os.Stat(binary); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return o, fmt.Errorf("--binary %s is not an executable file", binary)
	}
	o.binary = binary
	o.runningPID = runningBrokerPID(socket)
	return o, nil
}

func printPlan(w io.Writer, p installPlan) {
	fmt.Fprintf(w, "# portier install --dry-run (%s): nothing was changed\n", p.manager)
	if p.stopPID != 0 {
		fmt.Fprintf(w, "\n# would stop the running broker (pid %d) so that the %s one can take the socket; its backends keep running\nkill -TERM %d\n", p.stopPID, p.manager, p.stopPID)
	}
	for _, f := range p.write {
		fmt.Fprintf(w, "\n# would write %s:\n%s", f.path, f.body)
		if !strings.HasSuffix(f.body, "\n") {
			fmt.Fprintln(w)
		}
	}
	if len(p.commands) > 0 {
		fmt.Fprintln(w, "\n# would run:")
		for _, c := range p.commands {
			fmt.Fprintln(w, shellQuote(c.args))
		}
	}
	for _, path := range p.remove {
		fmt.Fprintf(w, "\n# would remove %s\n", path)
	}
	if len(p.afterRemove) > 0 {
		fmt.Fprintln(w, "\n# would then run:")
		for _, c := range p.afterRemove {
			fmt.Fprintln(w, shellQuote(c.args))
		}
	}
	if len(p.notes) > 0 {
		fmt.Fprintln(w, "\n# and it would then say:")
	}
	for _, n := range p.notes {
		fmt.Fprintf(w, "#   %s\n", n)
	}
}

func executePlan(stdout, stderr io.Writer, p installPlan) error {
	if p.stopPID != 0 {
		if err := stopBroker(p.stopPID); err != nil {
			return fmt.Errorf("stop the running broker (pid %d): %w", p.stopPID, err)
		}
		fmt.Fprintf(stdout, "stopped the running broker (pid %d); its backends keep running and the %s broker re-adopts them\n", p.stopPID, p.manager)
	}
	for _, f := range p.write {
		if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
			return err
		}
		if err := writeFileAtomic(f.path, []byte(f.body), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s\n", f.path)
	}
	if err := runInstallCommands(stdout, stderr, p.commands); err != nil {
		return err
	}
	for _, path := range p.remove {
		err := os.Remove(path)
		switch {
		case err == nil:
			fmt.Fprintf(stdout, "removed %s\n", path)
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
	}
	if err := runInstallCommands(stdout, stderr, p.afterRemove); err != nil {
		return err
	}
	for _, n := range p.notes {
		fmt.Fprintln(stdout, n)
	}
	return nil
}

func runInstallCommands(stdout, stderr io.Writer, cmds []installCommand) error {
	for _, c := range cmds {
		fmt.Fprintf(stdout, "running %s\n", shellQuote(c.args))
		if err := runInstallCommand(stdout, stderr, c.args); err != nil {
			if c.mayFail {
				fmt.Fprintf(stdout, "(that failed, which only means there was nothing to undo: %v)\n", err)
				continue
			}
			return err
		}
	}
	return nil
}

func runInstallCommand(stdout, stderr io.Writer, args []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), installCommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", shellQuote(args), err)
	}
	return nil
}

// writeFileAtomic writes through a temporary file and a rename, so a
// service manager never reads half a unit.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// shellQuote renders args as a line a user can paste into a shell.
func shellQuote(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:@%+,") == "" {
			out[i] = a
		} else {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}
