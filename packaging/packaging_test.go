package packaging

import (
	"bytes"
	"encoding/xml"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestShippedFilesAreTheDefaults: rendering with no options gives the files
// in this directory byte for byte, so what a user copies by hand and what
// portier install writes differ only in the paths.
func TestShippedFilesAreTheDefaults(t *testing.T) {
	for name, render := range map[string]func(Options) (string, error){
		"systemd/portier.socket":                 SystemdSocket,
		"systemd/portier.service":                SystemdService,
		"launchd/io.github.portier.broker.plist": LaunchdPlist,
	} {
		shipped, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := render(Options{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got != string(shipped) {
			t.Errorf("%s: the default rendering differs from the shipped file", name)
		}
	}
}

// renderedUnits writes both systemd units for bin into a fresh directory.
func renderedUnits(t *testing.T, o Options) string {
	t.Helper()
	dir := t.TempDir()
	sock, err := SystemdSocket(o)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := SystemdService(o)
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{SystemdSocketName: sock, SystemdServiceName: svc} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// SystemdAnalyzeVerify runs `systemd-analyze --user verify` on the units in
// dir. systemd-analyze only warns (exit 0) about settings it ignores, such
// as a misspelt KillMode, so any output at all fails the check.
func systemdAnalyzeVerify(t *testing.T, dir string) {
	t.Helper()
	tool, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("PORTIER_TEST_REQUIRE_SYSTEMD") != "" {
			t.Fatal("systemd-analyze is not installed, and PORTIER_TEST_REQUIRE_SYSTEMD is set")
		}
		t.Skip("systemd-analyze is not installed (Debian: apt-get install systemd); .ci/run installs it")
	}
	rt := t.TempDir()
	if err := os.Chmod(rt, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tool, "--user", "verify", filepath.Join(dir, SystemdSocketName), filepath.Join(dir, SystemdServiceName))
	// A user manager's view needs a runtime directory; nothing is started.
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+rt, "SYSTEMD_LOG_COLOR=0")
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestSystemdUnitsVerify: the units, rendered for a real executable (this
// test binary), pass systemd's own checks, with the default socket and
// with a literal path that needs escaping.
func TestSystemdUnitsVerify(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	systemdAnalyzeVerify(t, renderedUnits(t, Options{Binary: exe}))
	systemdAnalyzeVerify(t, renderedUnits(t, Options{Binary: exe, Socket: "/tmp/portier-100%/broker.sock", ServicesDir: "/home/a b/$services"}))
}

// TestSystemdRendering: the paths land where systemd reads them, escaped.
func TestSystemdRendering(t *testing.T) {
	svc, err := SystemdService(Options{Binary: "/opt/portier/bin/portier", ServicesDir: "/home/a b/svc%1"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "\nExecStart=/opt/portier/bin/portier serve --services \"/home/a b/svc%%1\"\n"; !strings.Contains(svc, want) {
		t.Errorf("service lacks %q:\n%s", want, svc)
	}
	for _, line := range []string{"Type=notify", "KillMode=process"} {
		if !strings.Contains(svc, "\n"+line+"\n") {
			t.Errorf("service lacks %s", line)
		}
	}
	sock, err := SystemdSocket(Options{Socket: "/tmp/portier-1000/broker.sock"})
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"ListenStream=/tmp/portier-1000/broker.sock", "DirectoryMode=0700", "FileDescriptorName=broker"} {
		if !strings.Contains(sock, "\n"+line+"\n") {
			t.Errorf("socket lacks %s:\n%s", line, sock)
		}
	}
	if _, err := SystemdService(Options{Binary: "/bin/port\nier"}); err == nil {
		t.Error("a newline in the binary path was written into the unit")
	}
}

// plistValues parses a plist's top-level dict into key -> raw element
// (name and text), failing on XML that does not parse.
func plistValues(t *testing.T, doc string) (map[string]string, []string) {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(doc))
	vals := map[string]string{}
	var args []string
	var stack []string
	var key, text string
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("plist does not parse: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			stack = append(stack, tok.Name.Local)
			text = ""
			if len(stack) == 3 && tok.Name.Local != "key" { // plist > dict > value
				vals[key] = tok.Name.Local
			}
		case xml.CharData:
			text += string(tok)
		case xml.EndElement:
			switch {
			case len(stack) == 3 && tok.Name.Local == "key":
				key = text
			case len(stack) == 3 && tok.Name.Local == "string":
				vals[key] = "string:" + text
			case len(stack) == 4 && key == "ProgramArguments" && tok.Name.Local == "string":
				args = append(args, text)
			}
			stack = stack[:len(stack)-1]
		}
	}
	return vals, args
}

// TestLaunchdPlist: the LaunchAgent is well-formed XML with the label,
// arguments (escaped), start at login and restart on failure.
func TestLaunchdPlist(t *testing.T) {
	doc, err := LaunchdPlist(Options{Binary: "/Users/a&b/bin/portier", Socket: "/tmp/portier-501/broker.sock",
		ServicesDir: "/Users/a&b/.config/portier/services", LogFile: "/tmp/portier-501/broker.log"})
	if err != nil {
		t.Fatal(err)
	}
	vals, args := plistValues(t, doc)
	if vals["Label"] != "string:"+LaunchdLabel {
		t.Errorf("Label = %q", vals["Label"])
	}
	if vals["RunAtLoad"] != "true" || vals["KeepAlive"] != "dict" {
		t.Errorf("RunAtLoad = %q, KeepAlive = %q", vals["RunAtLoad"], vals["KeepAlive"])
	}
	want := []string{"/Users/a&b/bin/portier", "serve", "--socket", "/tmp/portier-501/broker.sock",
		"--services", "/Users/a&b/.config/portier/services", "--log-file", "/tmp/portier-501/broker.log"}
	if strings.Join(args, "|") != strings.Join(want, "|") {
		t.Errorf("ProgramArguments = %q, want %q", args, want)
	}
	if _, ok := vals["Sockets"]; ok {
		t.Error("the agent declares launchd sockets, which portier cannot take without cgo")
	}
}
