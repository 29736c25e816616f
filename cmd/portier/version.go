package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

func init() {
	register(command{name: "version", summary: "print portier's version, VCS revision and Go version", run: versionCmd,
		help:    "Print the version of this portier binary: its module version, the VCS revision it was built from, and the Go toolchain. 'portier --version' is the same.",
		example: "portier version\nportier version --json | jq -r .revision"})
}

// versionInfo is what `portier version --json` prints; the field names are
// part of the CLI's stable interface (docs/CLI.md).
type versionInfo struct {
	Module       string `json:"module"`
	Version      string `json:"version"`
	Revision     string `json:"revision"`
	RevisionTime string `json:"revision_time"`
	Modified     bool   `json:"modified"`
	Go           string `json:"go"`
	OS           string `json:"os"`
	Arch         string `json:"arch"`
}

// versionFrom reads the version from build information: the module version
// ("(devel)" for a build from a checkout) and the vcs.* settings the go
// command records when it builds inside a repository.
func versionFrom(bi *debug.BuildInfo, ok bool) versionInfo {
	v := versionInfo{Module: "github.com/portier/portier", Version: "unknown", Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if !ok || bi == nil {
		return v
	}
	if bi.Main.Path != "" {
		v.Module = bi.Main.Path
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		v.Go = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.RevisionTime = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func (v versionInfo) text() string {
	rev := "revision unknown (built without VCS information)"
	if v.Revision != "" {
		rev = "revision " + v.Revision
		if v.RevisionTime != "" {
			rev += " from " + v.RevisionTime
		}
		if v.Modified {
			rev += ", with uncommitted changes"
		}
	}
	return fmt.Sprintf("portier %s (%s)\n%s\n%s %s/%s\n", v.Version, v.Module, rev, v.Go, v.OS, v.Arch)
}

func versionCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", stderr)
	asJSON := fs.Bool("json", false, "print one JSON object (fields in docs/CLI.md)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	v := versionFrom(debug.ReadBuildInfo())
	if *asJSON {
		return writeJSON(stdout, stderr, v)
	}
	io.WriteString(stdout, v.text())
	return exitOK
}

// writeJSON prints v as indented JSON, the format of every --json flag.
func writeJSON(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintln(stderr, "portier: encode JSON:", err)
		return exitFailure
	}
	return exitOK
}
