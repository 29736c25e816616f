// Package packaging owns the units that run the portier broker under a
// login session's service manager: systemd user units on Linux (a socket
// unit, so the broker starts on the first connection, and a Type=notify
// service) and a LaunchAgent on macOS. The files beside this one are usable
// as they are; `portier install` renders them with the path of its own
// binary and the socket and services paths it resolved, then enables them.
package packaging

import (
	_ "embed"
	"fmt"
	"strings"
)

// DefaultBinary is the portier path the shipped units name.
const DefaultBinary = "/usr/local/bin/portier"

// Unit and agent file names, as the service managers expect them.
const (
	SystemdSocketName  = "portier.socket"
	SystemdServiceName = "portier.service"
	LaunchdLabel       = "io.github.portier.broker"
	LaunchdPlistName   = LaunchdLabel + ".plist"
)

// DefaultSystemdSocketPath is the ListenStream= of the shipped socket unit:
// %t is the user manager's $XDG_RUNTIME_DIR.
const DefaultSystemdSocketPath = "%t/portier/broker.sock"

var (
	//go:embed systemd/portier.socket
	systemdSocket string
	//go:embed systemd/portier.service
	systemdService string
	//go:embed launchd/io.github.portier.broker.plist
	launchdPlist string
)

// Options say what a rendered unit runs. Zero values keep the shipped
// defaults.
type Options struct {
	// Binary is the absolute path of the portier executable.
	Binary string
	// Socket is the broker's socket path. For systemd it may use systemd
	// specifiers (the default is DefaultSystemdSocketPath); a literal path
	// must not contain '%', which Render escapes.
	Socket string
	// ServicesDir, when set, is passed to serve as --services.
	ServicesDir string
	// LogFile, when set, is passed to serve as --log-file (launchd, which
	// has no journal).
	LogFile string
}

// SystemdSocket renders portier.socket.
func SystemdSocket(o Options) (string, error) {
	if o.Socket == "" || o.Socket == DefaultSystemdSocketPath {
		return systemdSocket, nil
	}
	if err := systemdPath(o.Socket); err != nil {
		return "", err
	}
	out, err := replaceLine(systemdSocket, "ListenStream="+DefaultSystemdSocketPath, "ListenStream="+systemdEscape(o.Socket))
	if err != nil {
		return "", err
	}
	return replaceLine(out, socketComment, "# Where portier clients on this machine look for the broker.")
}

// socketComment explains the default ListenStream=; a literal path gets
// its own.
const socketComment = "# Where portier clients look first: $XDG_RUNTIME_DIR/portier/broker.sock."

// SystemdService renders portier.service. Under socket activation the
// broker takes its socket path from the socket it is handed, so the
// service names none.
func SystemdService(o Options) (string, error) {
	bin := o.Binary
	if bin == "" {
		bin = DefaultBinary
	}
	args := []string{bin, "serve"}
	if o.ServicesDir != "" {
		args = append(args, "--services", o.ServicesDir)
	}
	if o.LogFile != "" {
		args = append(args, "--log-file", o.LogFile)
	}
	for _, a := range args {
		if err := systemdPath(a); err != nil {
			return "", err
		}
	}
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = systemdQuote(a)
	}
	return replaceLine(systemdService, "ExecStart="+DefaultBinary+" serve", "ExecStart="+strings.Join(quoted, " "))
}

// LaunchdPlist renders the LaunchAgent.
func LaunchdPlist(o Options) (string, error) {
	bin := o.Binary
	if bin == "" {
		bin = DefaultBinary
	}
	args := []string{bin, "serve"}
	if o.Socket != "" {
		args = append(args, "--socket", o.Socket)
	}
	if o.ServicesDir != "" {
		args = append(args, "--services", o.ServicesDir)
	}
	if o.LogFile != "" {
		args = append(args, "--log-file", o.LogFile)
	}
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString("\t\t<string>")
		b.WriteString(xmlEscape(a))
		b.WriteString("</string>")
	}
	return replaceLine(launchdPlist, "\t\t<string>"+DefaultBinary+"</string>\n\t\t<string>serve</string>", b.String())
}

// replaceLine replaces old, which must occur exactly once as whole lines.
func replaceLine(text, old, repl string) (string, error) {
	if strings.Count(text, "\n"+old+"\n") != 1 {
		return "", fmt.Errorf("packaging: the shipped unit no longer has the line %q to replace", old)
	}
	return strings.Replace(text, "\n"+old+"\n", "\n"+repl+"\n", 1), nil
}

// systemdPath refuses what a unit file cannot carry.
func systemdPath(s string) error {
	if strings.ContainsAny(s, "\n\r\x00") {
		return fmt.Errorf("packaging: %q cannot be written into a unit file", s)
	}
	return nil
}

// systemdEscape doubles '%', which systemd reads as a specifier.
func systemdEscape(s string) string { return strings.ReplaceAll(s, "%", "%%") }

// systemdQuote makes one ExecStart= argument: specifiers escaped, and
// double-quoted (with \ and " escaped) when it has characters systemd would
// split on or interpret.
func systemdQuote(s string) string {
	s = systemdEscape(s)
	if s != "" && !strings.ContainsAny(s, " \t\"'\\;$") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", "$$")
	return `"` + r.Replace(s) + `"`
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;").Replace(s)
}
