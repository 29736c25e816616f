// Package servicedef owns service definition files: one TOML file per
// service, <dir>/<name>.toml, parsed and validated with errors that name the
// file and line, and a Registry that sees a new or edited file at the next
// lookup without a restart.
package servicedef

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/portier/portier/wire"
)

// Activation says how a backend is started and reached.
type Activation string

const (
	// ActivationPortier: the backend uses package backend, registers with the
	// broker and can take handed-off connections.
	ActivationPortier Activation = "portier"
	// ActivationListenFDs: the broker binds the backend's socket and passes it
	// as fd 3 (systemd convention); reached through the reconnect route only.
	ActivationListenFDs Activation = "listen-fds"
)

// Defaults of optional keys.
const (
	DefaultIdleTimeout  = 10 * time.Minute
	DefaultStartTimeout = 10 * time.Second
	MaxStartTimeout     = 5 * time.Minute
)

// Definition is one validated service definition.
type Definition struct {
	Name          string
	Version       string
	Command       []string
	Env           map[string]string
	Dir           string
	Handoff       bool
	Activation    Activation
	IdleTimeout   time.Duration // 0 = never
	StartTimeout  time.Duration
	MinVersion    string
	AllowVersions []string
	File          string // path it was read from
}

// Error is a definition problem at a file and line. Error() is
// "<file>:<line>: <message>" (line omitted when unknown).
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// raw mirrors the TOML document; pointers tell absent keys from zero values.
type raw struct {
	Name          *string           `toml:"name"`
	Version       *string           `toml:"version"`
	Command       []string          `toml:"command"`
	Env           map[string]string `toml:"env"`
	Dir           *string           `toml:"dir"`
	Handoff       *bool             `toml:"handoff"`
	Activation    *string           `toml:"activation"`
	IdleTimeout   *string           `toml:"idle_timeout"`
	StartTimeout  *string           `toml:"start_timeout"`
	MinVersion    *string           `toml:"min_version"`
	AllowVersions []string          `toml:"allow_versions"`
}

var envKeyPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Parse decodes and validates one definition. file is used for messages and
// must be named <name>.toml.
func Parse(file string, data []byte) (*Definition, error) {
	base := filepath.Base(file)
	var r raw
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, decodeError(base, data, err)
	}
	fail := func(key, format string, args ...any) error {
		return &Error{File: base, Line: keyLine(data, key), Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	d := &Definition{File: file, Env: r.Env, Handoff: true, Activation: ActivationPortier,
		IdleTimeout: DefaultIdleTimeout, StartTimeout: DefaultStartTimeout}
	stem := strings.TrimSuffix(base, ".toml")
	switch {
	case r.Name == nil:
		return nil, &Error{File: base, Msg: `missing required key "name"`}
	case !wire.ValidServiceName(*r.Name):
		return nil, fail("name", "name %q must match [a-z0-9-]{1,64}", *r.Name)
	case *r.Name != stem:
		return nil, fail("name", "name %q must equal the file name %q", *r.Name, stem)
	}
	d.Name = *r.Name
	switch {
	case r.Version == nil:
		return nil, &Error{File: base, Msg: `missing required key "version"`}
	case !wire.ValidVersion(*r.Version):
		return nil, fail("version", "version %q is not of the form MAJOR.MINOR.PATCH[-prerelease]", *r.Version)
	}
	d.Version = *r.Version
	switch {
	case r.Command == nil:
		return nil, &Error{File: base, Msg: `missing required key "command"`}
	case len(r.Command) == 0:
		return nil, fail("command", "command is empty; give the program and its arguments")
	case !filepath.IsAbs(r.Command[0]):
		return nil, fail("command", "command[0] %q must be an absolute path", r.Command[0])
	}
	d.Command = r.Command
	for k := range r.Env {
		if !envKeyPattern.MatchString(k) {
			return nil, fail("env", "env key %q is not a valid variable name", k)
		}
		if strings.HasPrefix(k, "PORTIER_") || strings.HasPrefix(k, "LISTEN_") {
			return nil, fail("env", "env key %q is reserved: the broker sets PORTIER_* and LISTEN_* itself", k)
		}
	}
	if r.Dir != nil {
		if !filepath.IsAbs(*r.Dir) {
			return nil, fail("dir", "dir %q must be an absolute path", *r.Dir)
		}
		d.Dir = *r.Dir
	}
	if r.Activation != nil {
		switch a := Activation(*r.Activation); a {
		case ActivationPortier, ActivationListenFDs:
			d.Activation = a
		default:
			return nil, fail("activation", `activation %q must be "portier" or "listen-fds"`, *r.Activation)
		}
	}
	if r.Handoff != nil {
		if *r.Handoff && d.Activation == ActivationListenFDs {
			return nil, fail("handoff", `handoff = true needs activation = "portier": a listen-fds backend is reached only by reconnecting`)
		}
		d.Handoff = *r.Handoff
	}
	if d.Activation == ActivationListenFDs {
		d.Handoff = false
	}
	if r.IdleTimeout != nil {
		v, err := parseDuration(*r.IdleTimeout)
		if err != nil {
			return nil, fail("idle_timeout", "idle_timeout %q: %v", *r.IdleTimeout, err)
		}
		d.IdleTimeout = v
	}
	if r.StartTimeout != nil {
		v, err := parseDuration(*r.StartTimeout)
		if err != nil {
			return nil, fail("start_timeout", "start_timeout %q: %v", *r.StartTimeout, err)
		}
		if v <= 0 || v > MaxStartTimeout {
			return nil, fail("start_timeout", "start_timeout %q must be more than 0 and at most %s", *r.StartTimeout, MaxStartTimeout)
		}
		d.StartTimeout = v
	}
	if r.MinVersion != nil {
		if !wire.ValidVersion(*r.MinVersion) {
			return nil, fail("min_version", "min_version %q is not of the form MAJOR.MINOR.PATCH[-prerelease]", *r.MinVersion)
		}
		if Compare(*r.MinVersion, d.Version) > 0 {
			return nil, fail("min_version", "min_version %s is newer than version %s: no request could be served", *r.MinVersion, d.Version)
		}
		d.MinVersion = *r.MinVersion
	}
	if r.AllowVersions != nil {
		if len(r.AllowVersions) == 0 {
			return nil, fail("allow_versions", "allow_versions is empty; remove it or list at least one version")
		}
		for _, v := range r.AllowVersions {
			if !wire.ValidVersion(v) {
				return nil, fail("allow_versions", "allow_versions entry %q is not of the form MAJOR.MINOR.PATCH[-prerelease]", v)
			}
		}
		d.AllowVersions = r.AllowVersions
	}
	return d, nil
}

// parseDuration accepts Go durations ("10m", "1h30m") and "0".
func parseDuration(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New(`want a duration such as "30s", "10m" or "0"`)
	}
	if v < 0 {
		return 0, errors.New("must not be negative")
	}
	return v, nil
}

// decodeError turns a TOML library error into an *Error with a line.
func decodeError(file string, data []byte, err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) && len(strict.Errors) > 0 {
		e := strict.Errors[0]
		row, _ := e.Position()
		key := strings.Join(e.Key(), ".")
		return &Error{File: file, Line: row, Key: key, Msg: fmt.Sprintf("unknown key %q", key)}
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, _ := de.Position()
		return &Error{File: file, Line: row, Key: strings.Join(de.Key(), "."), Msg: de.Error()}
	}
	msg := err.Error()
	// Type mismatches carry no position; find the key they name.
	key := ""
	if i := strings.Index(msg, "toml: cannot decode TOML"); i >= 0 {
		for _, k := range []string{"name", "version", "command", "env", "dir", "handoff", "activation", "idle_timeout", "start_timeout", "min_version", "allow_versions"} {
			if strings.Contains(msg, "."+fieldName(k)+" ") || strings.HasSuffix(msg, "."+fieldName(k)) {
				key = k
			}
		}
	}
	if key != "" {
		return &Error{File: file, Line: keyLine(data, key), Key: key, Msg: fmt.Sprintf("%s has the wrong type: %s", key, strings.TrimPrefix(msg, "toml: "))}
	}
	return &Error{File: file, Msg: msg}
}

// fieldName maps a TOML key to the raw struct's field name.
func fieldName(key string) string {
	parts := strings.Split(key, "_")
	for i, p := range parts {
		parts[i] = strings.ToUpper(p[:1]) + p[1:]
	}
	return strings.Join(parts, "")
}

// keyLine finds the 1-based line where key is assigned at top level, 0 when
// it is not found.
func keyLine(data []byte, key string) int {
	for i, line := range strings.Split(string(data), "\n") {
		l := strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(l, key); ok {
			rest = strings.TrimSpace(rest)
			if strings.HasPrefix(rest, "=") {
				return i + 1
			}
		}
	}
	return 0
}
