package main

import (
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/portier/portier/packaging"
)

// systemdPlan installs the socket and service as user units and enables
// the socket, or undoes that.
func systemdPlan(o installOptions) (installPlan, error) {
	dir := filepath.Join(o.configHome, "systemd", "user")
	sockUnit := filepath.Join(dir, packaging.SystemdSocketName)
	svcUnit := filepath.Join(dir, packaging.SystemdServiceName)
	p := installPlan{manager: "systemd"}
	if o.uninstall {
		p.commands = []installCommand{{args: []string{"systemctl", "--user", "disable", "--now", packaging.SystemdSocketName, packaging.SystemdServiceName}, mayFail: true}}
		p.remove = []string{sockUnit, svcUnit}
		p.afterRemove = []installCommand{{args: []string{"systemctl", "--user", "daemon-reload"}}}
		p.notes = []string{"backends the broker started keep running until they are idle; clients with client.AutoStart start a broker again"}
		return p, nil
	}
	uo := packaging.Options{Binary: o.binary, ServicesDir: o.services}
	if !o.socketIsXDG {
		// Clients here do not find $XDG_RUNTIME_DIR (or were pointed
		// elsewhere): listen where they look.
		uo.Socket = o.socket
	}
	sock, err := packaging.SystemdSocket(uo)
	if err != nil {
		return p, err
	}
	svc, err := packaging.SystemdService(uo)
	if err != nil {
		return p, err
	}
	p.stopPID = o.runningPID
	p.write = []installFile{{sockUnit, sock}, {svcUnit, svc}}
	p.commands = []installCommand{
		{args: []string{"systemctl", "--user", "daemon-reload"}},
		{args: []string{"systemctl", "--user", "enable", "--now", packaging.SystemdSocketName}},
	}
	p.notes = []string{
		fmt.Sprintf("systemd now listens on %s and starts the broker (%s) on the first connection", o.socket, o.binary),
		"status: systemctl --user status portier.socket portier.service; logs: journalctl --user -u portier.service",
	}
	return p, nil
}

// launchdPlan installs the LaunchAgent and loads it into the login
// session, or undoes that.
func launchdPlan(o installOptions) (installPlan, error) {
	plist := filepath.Join(o.home, "Library", "LaunchAgents", packaging.LaunchdPlistName)
	domain := "gui/" + strconv.Itoa(o.uid)
	bootout := installCommand{args: []string{"launchctl", "bootout", domain + "/" + packaging.LaunchdLabel}, mayFail: true}
	p := installPlan{manager: "launchd"}
	if o.uninstall {
		p.commands = []installCommand{bootout}
		p.remove = []string{plist}
		p.notes = []string{"backends the broker started keep running until they are idle; clients with client.AutoStart start a broker again"}
		return p, nil
	}
	logFile := filepath.Join(filepath.Dir(o.socket), "broker.log")
	doc, err := packaging.LaunchdPlist(packaging.Options{Binary: o.binary, Socket: o.socket, ServicesDir: o.services, LogFile: logFile})
	if err != nil {
		return p, err
	}
	p.stopPID = o.runningPID
	p.write = []installFile{{plist, doc}}
	// bootout first, so that running install again loads the new file.
	p.commands = []installCommand{bootout, {args: []string{"launchctl", "bootstrap", domain, plist}}}
	p.notes = []string{
		fmt.Sprintf("launchd now runs the broker (%s) at login and restarts it if it fails; it listens on %s", o.binary, o.socket),
		"status: launchctl print " + domain + "/" + packaging.LaunchdLabel + "; logs: " + logFile,
	}
	return p, nil
}
