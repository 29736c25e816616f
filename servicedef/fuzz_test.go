package servicedef

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portier/portier/wire"
)

// FuzzParse feeds arbitrary documents to Parse: it must never panic, and
// what it returns must hold up. Seeds live in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`name = "echo"` + "\n" + `version = "1.0.0"` + "\n" + `command = ["/usr/bin/echo"]` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse("echo.toml", data)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not *Error: %v", err, err)
			}
			lines := strings.Count(string(data), "\n") + 1
			if pe.File != "echo.toml" || pe.Line < 0 || pe.Line > lines || pe.Msg == "" {
				t.Fatalf("bad error %#v for %d lines", pe, lines)
			}
			if d != nil {
				t.Fatal("both a definition and an error")
			}
			return
		}
		if d.Name != "echo" || !wire.ValidVersion(d.Version) || len(d.Command) == 0 || !filepath.IsAbs(d.Command[0]) {
			t.Fatalf("accepted an invalid definition: %+v", d)
		}
		if d.StartTimeout <= 0 || d.StartTimeout > MaxStartTimeout || d.IdleTimeout < 0 {
			t.Fatalf("bad timeouts: %+v", d)
		}
		if d.Activation != ActivationPortier && d.Activation != ActivationListenFDs {
			t.Fatalf("bad activation %q", d.Activation)
		}
		if d.Activation == ActivationListenFDs && d.Handoff {
			t.Fatal("listen-fds with handoff")
		}
		if d.MinVersion != "" && len(d.AllowVersions) > 0 {
			t.Fatal("both min_version and allow_versions")
		}
		if len(d.AllowVersions) == 0 && !d.Allows(d.Version) {
			t.Fatalf("definition does not allow its own version: %+v", d)
		}
		for _, a := range d.AllowVersions {
			if !d.Allows(a) {
				t.Fatalf("allow_versions entry %q not allowed", a)
			}
		}
		if d.MinVersion != "" && !d.Allows(d.MinVersion) {
			t.Fatalf("min_version %q not allowed", d.MinVersion)
		}
	})
}
