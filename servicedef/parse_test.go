//go:build unix

package servicedef

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The first lines of most test files: name on 1, version on 2, command on 3.
const (
	hdr = "name = \"echo\"\nversion = \"1.0.0\"\n"
	cmd = "command = [\"/usr/bin/echo\"]\n"
	ok3 = hdr + cmd // three valid lines; the next key is on line 4
)

func TestParseInvalid(t *testing.T) {
	const want = `(want MAJOR.MINOR.PATCH[-prerelease], e.g. "1.2.3" or "1.3.0-rc.1")`
	tests := []struct {
		name, in, want string
	}{
		// command
		{"relative command", hdr + "command = [\"echo\", \"x\"]\n",
			`echo.toml:3: command[0] "echo" must be an absolute path`},
		{"empty command", hdr + "command = []\n",
			`echo.toml:3: command is empty: give the program's absolute path and its arguments, e.g. ["/usr/bin/prog", "--flag"]`},
		{"command string", hdr + "command = \"/bin/echo\"\n",
			`echo.toml:3: command must be an array such as ["/usr/bin/prog", "--flag"], not a string`},
		{"command int element", hdr + "command = [\"/bin/echo\", 3]\n",
			`echo.toml:3: command[1] must be a string, not an integer; quote it`},
		{"command nested array, multi-line", hdr + "command = [\n  \"/bin/echo\",\n  \"--x\",\n  [\"nested\"],\n]\n",
			`echo.toml:6: command[2] must be a string, not an array`},
		{"command relative on its own line", hdr + "command = [\n  \"bin/echo\",\n]\n",
			`echo.toml:4: command[0] "bin/echo" must be an absolute path`},
		{"command NUL", hdr + "command = [\"/bin/echo\", \"a\\u0000b\"]\n",
			`echo.toml:3: command[1] contains a NUL character, which no program argument, path or variable can hold`},
		{"command is not a table", ok3 + "command.x = \"a\"\n",
			`echo.toml:4: command is not a table; write command = ...`},

		// name
		{"uppercase name", "name = \"Echo\"\nversion = \"1.0.0\"\n" + cmd,
			`echo.toml:1: name "Echo" is not a valid service name: use 1 to 64 characters from a-z, 0-9 and '-'`},
		{"name differs from file", "name = \"other\"\nversion = \"1.0.0\"\n" + cmd,
			`echo.toml:1: name "other" does not match the file name "echo.toml"; rename the file to other.toml or set name = "echo"`},
		{"name twice", ok3 + "name = \"echo\"\n",
			`echo.toml:4: name is set twice (first on line 1)`},
		{"missing name", "version = \"1.0.0\"\n" + cmd,
			`echo.toml: missing required key "name"`},
		{"missing command", hdr,
			`echo.toml: missing required key "command"`},
		{"empty file", "",
			`echo.toml: missing required key "name"`},

		// version
		{"two-part version", "name = \"echo\"\nversion = \"1.0\"\n" + cmd,
			`echo.toml:2: version "1.0" is not a valid version: not three dot-separated numbers ` + want},
		{"v prefix", "name = \"echo\"\nversion = \"v1.0.0\"\n" + cmd,
			`echo.toml:2: version "v1.0.0" is not a valid version: major "v1": not a number ` + want},
		{"uppercase prerelease", "name = \"echo\"\nversion = \"1.0.0-RC1\"\n" + cmd,
			`echo.toml:2: version "1.0.0-RC1" is not a valid version: pre-release "RC1": only a-z, 0-9 and '.' are allowed ` + want},
		{"leading zero", "name = \"echo\"\nversion = \"01.0.0\"\n" + cmd,
			`echo.toml:2: version "01.0.0" is not a valid version: major "01": leading zero ` + want},
		{"integer version", "name = \"echo\"\nversion = 1\n" + cmd,
			`echo.toml:2: version must be a string, not an integer; quote it`},

		// unknown keys and tables
		{"typo", ok3 + "comand = [\"/bin/x\"]\n",
			`echo.toml:4: unknown key "comand"; did you mean "command"?`},
		{"wrong case", ok3 + "IDLE_TIMEOUT = \"1m\"\n",
			`echo.toml:4: unknown key "IDLE_TIMEOUT"; did you mean "idle_timeout"?`},
		{"unknown key", ok3 + "color = \"red\"\n",
			`echo.toml:4: unknown key "color"; known keys are name, version, command, env, dir, handoff, activation, idle_timeout, start_timeout, min_version, allow_versions`},
		{"unknown dotted key", ok3 + "build.flags = \"-O2\"\n",
			`echo.toml:4: unknown key "build.flags"; known keys are name, version, command, env, dir, handoff, activation, idle_timeout, start_timeout, min_version, allow_versions`},
		{"unknown table", ok3 + "\n[build]\nx = 1\n",
			`echo.toml:5: unknown table [build]: only [env] is allowed, and the other keys go above it`},
		{"array of tables", ok3 + "[[env]]\nx = 1\n",
			`echo.toml:4: array of tables [[env]] is not allowed in a service definition`},

		// optional keys
		{"relative dir", ok3 + "dir = \"relative/path\"\n",
			`echo.toml:4: dir "relative/path" must be an absolute path`},
		{"handoff string", ok3 + "handoff = \"yes\"\n",
			`echo.toml:4: handoff must be true or false, not a string`},
		{"unknown activation", ok3 + "activation = \"inetd\"\n",
			`echo.toml:4: activation "inetd" is unknown: use "portier" (the backend uses package backend) or "listen-fds" (systemd-style socket activation)`},
		{"listen-fds with handoff", ok3 + "activation = \"listen-fds\"\nhandoff = true\n",
			`echo.toml:5: handoff = true needs activation = "portier": a listen-fds backend is reached only through its own socket; remove handoff or set it to false`},
		{"handoff before listen-fds", ok3 + "handoff = true\n# comment\nactivation = \"listen-fds\"\n",
			`echo.toml:4: handoff = true needs activation = "portier": a listen-fds backend is reached only through its own socket; remove handoff or set it to false`},
		{"idle_timeout words", ok3 + "idle_timeout = \"10 minutes\"\n",
			`echo.toml:4: idle_timeout "10 minutes" is not a duration: write a number with a unit (ms, s, m, h), such as "10m" or "0" (never)`},
		{"idle_timeout integer", ok3 + "idle_timeout = 600\n",
			`echo.toml:4: idle_timeout must be a duration string such as "10m" or "0" (never), not an integer`},
		{"idle_timeout negative", ok3 + "idle_timeout = \"-1m\"\n",
			`echo.toml:4: idle_timeout "-1m" must not be negative`},
		{"idle_timeout too short", ok3 + "idle_timeout = \"10ms\"\n",
			`echo.toml:4: idle_timeout "10ms" is too short: use at least 1s, or "0" to never stop an idle backend`},
		{"start_timeout zero", ok3 + "start_timeout = \"0\"\n",
			`echo.toml:4: start_timeout "0" must be more than 0 and at most 5m`},
		{"start_timeout too long", ok3 + "start_timeout = \"6m\"\n",
			`echo.toml:4: start_timeout "6m" must be more than 0 and at most 5m`},

		// version rules
		{"min_version above version", ok3 + "min_version = \"2.0.0\"\n",
			`echo.toml:4: min_version "2.0.0" is newer than version "1.0.0", so no client version could be served; lower min_version or raise version`},
		{"min_version invalid", ok3 + "min_version = \"1.0\"\n",
			`echo.toml:4: min_version "1.0" is not a valid version: not three dot-separated numbers ` + want},
		{"min_version date", ok3 + "min_version = 2024-01-01\n",
			`echo.toml:4: min_version must be a string, not a date/time; quote it`},
		{"allow_versions empty", ok3 + "allow_versions = []\n",
			`echo.toml:4: allow_versions is empty: list the versions clients may ask for, or remove the key to accept only version`},
		{"allow_versions duplicate", ok3 + "allow_versions = [\"1.0.0\", \"0.9.0\", \"1.0.0\"]\n",
			`echo.toml:4: allow_versions[2] "1.0.0" repeats allow_versions[0]`},
		{"allow_versions newer", ok3 + "allow_versions = [\"0.9.0\", \"1.1.0\"]\n",
			`echo.toml:4: allow_versions[1] "1.1.0" is newer than version "1.0.0": a build cannot serve a version newer than itself`},
		{"allow_versions string", ok3 + "allow_versions = \"1.0.0\"\n",
			`echo.toml:4: allow_versions must be an array such as ["1.0.0", "1.1.0"], not a string`},
		{"allow_versions bad entry on its line", ok3 + "allow_versions = [\n  \"0.9.0\",\n  \"1.0.0-rc.01\",\n]\n",
			`echo.toml:6: allow_versions[1] "1.0.0-rc.01" is not a valid version: pre-release identifier "01" has a leading zero ` + want},
		{"min and allow", ok3 + "min_version = \"0.9.0\"\nallow_versions = [\"0.9.0\"]\n",
			`echo.toml:5: min_version and allow_versions exclude each other: use min_version for a range, allow_versions for a list`},

		// env
		{"env bad name", ok3 + "env = { \"1BAD\" = \"x\" }\n",
			`echo.toml:4: env name "1BAD" is not a valid variable name: use letters, digits and '_', not starting with a digit`},
		{"env reserved", ok3 + "env = { PORTIER_SECRET = \"x\" }\n",
			`echo.toml:4: env name "PORTIER_SECRET" is reserved: the broker sets PORTIER_* and LISTEN_* for the backend itself`},
		{"env reserved listen", ok3 + "[env]\nLISTEN_FDS = \"3\"\n",
			`echo.toml:5: env name "LISTEN_FDS" is reserved: the broker sets PORTIER_* and LISTEN_* for the backend itself`},
		{"env integer value", ok3 + "env = { A = 1 }\n",
			`echo.toml:4: env.A must be a string, not an integer; quote it`},
		{"env not a table", ok3 + "env = \"A=1\"\n",
			`echo.toml:4: env must be a table such as env = { NAME = "value" }, not a string`},
		{"env key twice", ok3 + "\n[env]\nA = \"1\"\nA = \"2\"\n",
			`echo.toml:7: env.A is set twice (first on line 6)`},
		{"env inline then table", ok3 + "env = { A = \"1\" }\n[env]\nB = \"2\"\n",
			`echo.toml:5: env is already defined on line 4; define it once, as env = { ... } or as an [env] table`},
		{"env dotted then table", ok3 + "env.A = \"1\"\n[env]\nB = \"2\"\n",
			`echo.toml:5: [env] redefines env, already set with dotted keys on line 4; use one form`},
		{"env nested", ok3 + "env.A.B = \"x\"\n",
			`echo.toml:4: env.A.B: env holds NAME = "value" pairs, not nested tables`},
		{"top-level key under [env]", ok3 + "[env]\nidle_timeout = \"1m\"\n",
			`echo.toml:5: idle_timeout is set under [env], where it would become an environment variable; move it above the [env] header`},

		// syntax
		{"unterminated string", hdr + "command = [\"/bin/echo\", \"unterminated]\n",
			`echo.toml:3: TOML syntax error: basic strings cannot have new lines`},
		{"garbage after value", ok3 + "dir = \"/tmp\" extra\n",
			`echo.toml:4: TOML syntax error: expected newline but got U+0065 'e'`},
		{"dir NUL", ok3 + "dir = \"/a\\u0000b\"\n",
			`echo.toml:4: dir contains a NUL character, which no program argument, path or variable can hold`},
	}
	seen := map[string]bool{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if seen[tc.in] {
				t.Fatal("duplicate test input")
			}
			seen[tc.in] = true
			d, err := Parse("echo.toml", []byte(tc.in))
			if err == nil {
				t.Fatalf("accepted: %+v", d)
			}
			if err.Error() != tc.want {
				t.Errorf("error:\n got %s\nwant %s", err, tc.want)
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("%T is not *Error", err)
			}
			if pe.File != "echo.toml" || !strings.HasPrefix(tc.want, pe.File) {
				t.Errorf("File = %q", pe.File)
			}
			if pe.Key == "" && !strings.Contains(tc.want, "syntax error") {
				t.Errorf("no Key for %q", tc.want)
			}
		})
	}
}

func TestParseValidAllKeys(t *testing.T) {
	in := `# A backend with everything set.
name = "echo"
version = "1.2.0-rc.1"
command = [
  "/opt/echo/bin/echo-backend",   # the program
  "--verbose",
  'C:\literal',
  "",
]
dir = "/var/empty"
handoff = false
activation = "portier"
idle_timeout = "0"
start_timeout = "1m30s"
min_version = "1.0.0"

[env]
RUST_LOG = "debug"
"quoted_key" = "with \"quotes\" and \\ backslash"
lower_case = ''
`
	d, err := Parse("/etc/portier/services/echo.toml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := &Definition{
		Name:         "echo",
		Version:      "1.2.0-rc.1",
		Command:      []string{"/opt/echo/bin/echo-backend", "--verbose", `C:\literal`, ""},
		Env:          map[string]string{"RUST_LOG": "debug", "quoted_key": `with "quotes" and \ backslash`, "lower_case": ""},
		Dir:          "/var/empty",
		Handoff:      false,
		Activation:   ActivationPortier,
		IdleTimeout:  0,
		StartTimeout: 90 * time.Second,
		MinVersion:   "1.0.0",
		File:         "/etc/portier/services/echo.toml",
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("got  %+v\nwant %+v", d, want)
	}
}

func TestParseDefaults(t *testing.T) {
	d, err := Parse("echo.toml", []byte(ok3))
	if err != nil {
		t.Fatal(err)
	}
	want := &Definition{Name: "echo", Version: "1.0.0", Command: []string{"/usr/bin/echo"}, Handoff: true,
		Activation: ActivationPortier, IdleTimeout: DefaultIdleTimeout, StartTimeout: DefaultStartTimeout, File: "echo.toml"}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("got  %+v\nwant %+v", d, want)
	}
}

func TestParseValidForms(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		check func(*Definition) bool
	}{
		{"listen-fds turns handoff off", ok3 + "activation = \"listen-fds\"\n",
			func(d *Definition) bool { return d.Activation == ActivationListenFDs && !d.Handoff }},
		{"listen-fds with handoff = false", ok3 + "activation = \"listen-fds\"\nhandoff = false\n",
			func(d *Definition) bool { return !d.Handoff }},
		{"inline env over lines (TOML 1.1)", ok3 + "env = {\n  A = \"1\",\n  B = \"2\",\n}\n",
			func(d *Definition) bool { return d.Env["A"] == "1" && d.Env["B"] == "2" && len(d.Env) == 2 }},
		{"dotted env", ok3 + "env.A = \"1\"\nenv.B = \"2\"\n",
			func(d *Definition) bool { return d.Env["A"] == "1" && d.Env["B"] == "2" }},
		{"empty env table", ok3 + "[env]\n",
			func(d *Definition) bool { return d.Env == nil }},
		{"allow_versions with prerelease", "name = \"echo\"\nversion = \"2.0.0\"\n" + cmd + "allow_versions = [\"1.0.0\", \"2.0.0-rc.1\", \"2.0.0\"]\n",
			func(d *Definition) bool { return len(d.AllowVersions) == 3 }},
		{"min_version equal to version", ok3 + "min_version = \"1.0.0\"\n",
			func(d *Definition) bool { return d.MinVersion == "1.0.0" }},
		{"CRLF, BOM and quoted keys", "\ufeff\"name\" = \"echo\"\r\n'version' = \"1.0.0\"\r\ncommand = [\"/bin/echo\"]\r\n",
			func(d *Definition) bool { return d.Name == "echo" && d.Version == "1.0.0" }},
		{"idle and start bounds", ok3 + "idle_timeout = \"1s\"\nstart_timeout = \"5m\"\n",
			func(d *Definition) bool { return d.IdleTimeout == time.Second && d.StartTimeout == MaxStartTimeout }},
		{"file name without .toml is not checked", "name = \"other\"\nversion = \"1.0.0\"\n" + cmd, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := "echo.toml"
			if tc.check == nil {
				file = "stdin"
			}
			d, err := Parse(file, []byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil && !tc.check(d) {
				t.Errorf("unexpected result %+v", d)
			}
		})
	}
}

// Line numbers must be right however far down the key is.
func TestParseErrorLineDeepInFile(t *testing.T) {
	in := ok3 + strings.Repeat("# filler\n\n", 50) + "dir = \"rel\"\n"
	_, err := Parse("echo.toml", []byte(in))
	var pe *Error
	if !errors.As(err, &pe) || pe.Line != 104 || pe.Key != "dir" {
		t.Fatalf("err = %v, want line 104 key dir", err)
	}
}

func TestAllows(t *testing.T) {
	exact := &Definition{Version: "1.2.0"}
	ranged := &Definition{Version: "1.4.0", MinVersion: "1.2.0"}
	rangedPre := &Definition{Version: "2.0.0-rc.2", MinVersion: "2.0.0-alpha"}
	listed := &Definition{Version: "3.0.0", AllowVersions: []string{"2.9.0", "3.0.0-rc.1"}}
	tests := []struct {
		d      *Definition
		wanted string
		want   bool
	}{
		{exact, "1.2.0", true},
		{exact, "", false}, // a Hello names a version; AtLeast serves "any"
		{exact, "1.2.1", false},
		{exact, "1.1.9", false},
		{exact, "1.2.0-rc.1", false},
		{exact, "01.2.0", false},
		{exact, "garbage", false},

		{ranged, "1.2.0", true},
		{ranged, "1.3.7", true},
		{ranged, "1.4.0", true},
		{ranged, "1.3.0-beta.1", true}, // between 1.2.0 and 1.4.0 by precedence
		{ranged, "1.2.0-rc.1", false},  // a pre-release of the minimum precedes it
		{ranged, "1.4.0-rc.1", true},   // precedes the build's own release
		{ranged, "1.4.1", false},       // newer than the build
		{ranged, "1.1.99", false},
		{ranged, "2.0.0", false},

		{rangedPre, "2.0.0-alpha", true},
		{rangedPre, "2.0.0-alpha.1", true},
		{rangedPre, "2.0.0-beta", true},
		{rangedPre, "2.0.0-rc.2", true},
		{rangedPre, "2.0.0-rc.10", false}, // numeric identifiers compare as numbers
		{rangedPre, "2.0.0", false},       // a pre-release build cannot serve the release
		{rangedPre, "1.9.9", false},

		{listed, "2.9.0", true},
		{listed, "3.0.0-rc.1", true},
		{listed, "3.0.0", false}, // not listed
		{listed, "2.9.1", false},
	}
	for _, tc := range tests {
		if got := tc.d.Allows(tc.wanted); got != tc.want {
			t.Errorf("%+v.Allows(%q) = %v, want %v", *tc.d, tc.wanted, got, tc.want)
		}
	}
}

// TestAtLeast: a client that takes any version not older than a floor is
// served the defined version whatever min_version or allow_versions say.
func TestAtLeast(t *testing.T) {
	ranged := &Definition{Version: "1.4.0", MinVersion: "1.2.0"}
	listed := &Definition{Version: "3.0.0", AllowVersions: []string{"2.9.0"}}
	pre := &Definition{Version: "2.0.0-rc.1"}
	for _, tc := range []struct {
		d     *Definition
		floor string
		want  bool
	}{
		{ranged, "0.0.0", true},
		{ranged, "1.0.0", true}, // below min_version: min_version judges named versions only
		{ranged, "1.4.0", true},
		{ranged, "1.4.1", false},
		{listed, "0.0.0", true}, // 3.0.0 is not listed: same
		{listed, "3.0.1", false},
		{pre, "2.0.0-alpha", true},
		{pre, "2.0.0", false},
		{ranged, "", false},
		{ranged, "garbage", false},
	} {
		if got := tc.d.AtLeast(tc.floor); got != tc.want {
			t.Errorf("%+v.AtLeast(%q) = %v, want %v", *tc.d, tc.floor, got, tc.want)
		}
	}
}
