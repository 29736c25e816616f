package servicedef

import (
	"bytes"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2/unstable"
	"github.com/portier/portier/wire"
)

// Activation says how a backend is started and reached.
type Activation string

const (
	// ActivationPortier: the backend uses package backend, registers with
	// the broker over a control connection and can take handed-off
	// connections.
	ActivationPortier Activation = "portier"
	// ActivationListenFDs: the broker binds the backend's socket and passes
	// it in the systemd convention (LISTEN_FDS, LISTEN_PID,
	// LISTEN_FDNAMES); the backend is reached through the reconnect route
	// only.
	ActivationListenFDs Activation = "listen-fds"
)

// Defaults and bounds of optional keys.
const (
	DefaultIdleTimeout  = 10 * time.Minute
	MinIdleTimeout      = time.Second // a shorter positive idle_timeout is surely a typo
	DefaultStartTimeout = 10 * time.Second
	MaxStartTimeout     = 5 * time.Minute
)

// Definition is one validated service definition. Values returned by a
// Registry are shared: treat them as read-only.
type Definition struct {
	// Name is the service name, equal to the file's stem.
	Name string
	// Version is the version this backend build serves.
	Version string
	// Command is the program (an absolute path) and its arguments.
	Command []string
	// Env holds extra environment variables for the backend; nil when
	// none are set.
	Env map[string]string
	// Dir is the backend's working directory; "" means inherited.
	Dir string
	// Handoff says whether the broker hands client connections to the
	// backend (true by default with ActivationPortier, always false with
	// ActivationListenFDs).
	Handoff bool
	// Activation says how the backend is started and reached.
	Activation Activation
	// IdleTimeout is how long a backend without connections keeps
	// running; 0 means forever.
	IdleTimeout time.Duration
	// StartTimeout bounds the wait for a started backend to register.
	StartTimeout time.Duration
	// MinVersion, when set, makes the build accept any wanted version in
	// [MinVersion, Version]. See Allows.
	MinVersion string
	// AllowVersions, when set, lists the wanted versions the build
	// accepts. See Allows.
	AllowVersions []string
	// File is the path the definition was parsed from, as given to Parse.
	File string
	// ModTime is the file's modification time when a Registry read it
	// (zero from Parse).
	ModTime time.Time
}

// Error is a problem in a definition file. Error() is
// "<file>:<line>: <message>", or "<file>: <message>" when the problem
// belongs to the file as a whole (Line 0: a missing key, an unreadable or
// unsafe file).
type Error struct {
	// File is the file as named to Parse (a Registry uses the full path).
	File string
	// Line is the 1-based line of the offending key or value, 0 for the
	// whole file.
	Line int
	// Key is the offending key ("command", "env.PATH"), "" for syntax
	// errors and whole-file problems.
	Key string
	// Msg says what is wrong and how to fix it.
	Msg string
}

// Error formats the problem with its location.
func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// knownKeys are the top-level keys, in the order the docs list them.
var knownKeys = []string{"name", "version", "command", "env", "dir", "handoff", "activation",
	"idle_timeout", "start_timeout", "min_version", "allow_versions"}

// Parse decodes and validates one definition file. file names the file in
// error messages; when it ends in ".toml", the name key must equal its stem.
//
// Every problem is an *Error naming the line of the offending key or value.
// The document is read with go-toml's AST parser rather than decoded into a
// struct, so that every error (unknown key, wrong type, bad value, duplicate)
// carries the exact position of what caused it. Problems are reported one
// at a time, the first in file order; checks that relate two keys come after
// the per-key checks.
func Parse(file string, data []byte) (*Definition, error) {
	ps := &parser{
		file: file,
		data: data,
		d: &Definition{
			File:         file,
			Activation:   ActivationPortier,
			IdleTimeout:  DefaultIdleTimeout,
			StartTimeout: DefaultStartTimeout,
		},
		lines: make(map[string]int),
	}
	if err := ps.parse(); err != nil {
		return nil, err
	}
	return ps.d, nil
}

type envMode int

const (
	envNone   envMode = iota
	envInline         // env = { ... }
	envTable          // [env]
	envDotted         // env.KEY = "..."
)

type parser struct {
	file  string
	data  []byte
	p     unstable.Parser
	d     *Definition
	lines map[string]int // line of each key set so far ("name", "env.PATH", ...)

	envMode envMode
	handoff *bool // explicitly set value
}

func (ps *parser) errorf(line int, key, format string, args ...any) error {
	return &Error{File: ps.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)}
}

// line returns the 1-based line where n starts, or fallback when n carries
// no position (arrays do not).
func (ps *parser) line(n *unstable.Node, fallback int) int {
	for depth := 0; n != nil && n.Raw.Length == 0; depth++ {
		if depth > 64 {
			return fallback
		}
		// An array has no position of its own; its first element does.
		n = n.Child()
	}
	if n == nil {
		return fallback
	}
	return ps.p.Shape(n.Raw).Start.Line
}

// keyParts returns the parts of a (dotted) key and the line of its first
// part.
func (ps *parser) keyParts(n *unstable.Node) ([]string, int) {
	var parts []string
	line := 0
	it := n.Key()
	for it.Next() {
		k := it.Node()
		if line == 0 {
			line = ps.line(k, 0)
		}
		parts = append(parts, string(k.Data))
	}
	return parts, line
}

func (ps *parser) parse() error {
	// Some Windows editors start UTF-8 files with a byte order mark; it
	// is on line 1, so dropping it changes no line number.
	ps.data = bytes.TrimPrefix(ps.data, []byte("\ufeff"))
	ps.p.Reset(ps.data)
	inEnv := false // after an [env] header
	for ps.p.NextExpression() {
		e := ps.p.Expression()
		switch e.Kind {
		case unstable.Table:
			parts, line := ps.keyParts(e)
			if len(parts) == 1 && parts[0] == "env" {
				if err := ps.claimEnv(envTable, line); err != nil {
					return err
				}
				inEnv = true
				continue
			}
			return ps.errorf(line, dotted(parts), "unknown table [%s]: only [env] is allowed, and the other keys go above it", dotted(parts))
		case unstable.ArrayTable:
			parts, line := ps.keyParts(e)
			return ps.errorf(line, dotted(parts), "array of tables [[%s]] is not allowed in a service definition", dotted(parts))
		case unstable.KeyValue:
			parts, line := ps.keyParts(e)
			if inEnv {
				if len(parts) == 1 && slices.Contains(knownKeys, parts[0]) {
					// Almost surely meant for the top level: TOML puts
					// every key after [env] into env.
					return ps.errorf(line, "env."+parts[0], "%s is set under [env], where it would become an environment variable; move it above the [env] header", parts[0])
				}
				if err := ps.setEnv(parts, e.Value(), line); err != nil {
					return err
				}
				continue
			}
			if err := ps.setTop(parts, e.Value(), line); err != nil {
				return err
			}
		}
	}
	if err := ps.p.Error(); err != nil {
		return ps.syntaxError(err)
	}
	return ps.finish()
}

func (ps *parser) syntaxError(err error) error {
	line := 0
	msg := err.Error()
	if pe, ok := err.(*unstable.ParserError); ok {
		msg = pe.Message
		line = ps.offsetLine(pe.Highlight)
	}
	return ps.errorf(line, "", "TOML syntax error: %s", msg)
}

// offsetLine finds the line of a subslice of the document, 0 if h is not
// one (it always is for go-toml's errors; we just do not rely on it).
func (ps *parser) offsetLine(h []byte) int {
	off := cap(ps.data) - cap(h)
	if h == nil || off < 0 || off > len(ps.data) {
		return 0
	}
	return 1 + strings.Count(string(ps.data[:off]), "\n")
}

// claimEnv records how env is being defined; TOML allows a table to be
// defined only once, and neither an inline table nor a [table] can be
// extended later.
func (ps *parser) claimEnv(mode envMode, line int) error {
	prev, seen := ps.lines["env"]
	switch {
	case !seen:
		ps.envMode = mode
		ps.lines["env"] = line
		return nil
	case mode == envDotted && ps.envMode == envDotted:
		return nil
	case mode == envTable && ps.envMode == envDotted:
		return ps.errorf(line, "env", "[env] redefines env, already set with dotted keys on line %d; use one form", prev)
	default:
		return ps.errorf(line, "env", "env is already defined on line %d; define it once, as env = { ... } or as an [env] table", prev)
	}
}

func (ps *parser) setTop(parts []string, v *unstable.Node, line int) error {
	key := parts[0]
	if len(parts) > 1 {
		if key == "env" {
			if err := ps.claimEnv(envDotted, line); err != nil {
				return err
			}
			return ps.setEnv(parts[1:], v, line)
		}
		if slices.Contains(knownKeys, key) {
			return ps.errorf(line, dotted(parts), "%s is not a table; write %s = ...", key, key)
		}
		return ps.unknownKey(dotted(parts), key, line)
	}
	if key == "env" {
		if v.Kind != unstable.InlineTable {
			return ps.errorf(line, key, `env must be a table such as env = { NAME = "value" }, not %s`, kindName(v))
		}
		if err := ps.claimEnv(envInline, line); err != nil {
			return err
		}
		it := v.Children()
		for it.Next() {
			kv := it.Node()
			if kv.Kind != unstable.KeyValue {
				continue
			}
			parts, kline := ps.keyParts(kv)
			if err := ps.setEnv(parts, kv.Value(), kline); err != nil {
				return err
			}
		}
		return nil
	}
	if prev, ok := ps.lines[key]; ok {
		return ps.errorf(line, key, "%s is set twice (first on line %d)", key, prev)
	}
	ps.lines[key] = line
	d := ps.d
	switch key {
	case "name":
		s, err := ps.str(key, v, line)
		if err != nil {
			return err
		}
		if !wire.ValidServiceName(s) {
			return ps.errorf(line, key, "name %q is not a valid service name: use 1 to 64 characters from a-z, 0-9 and '-'", s)
		}
		if stem, ok := strings.CutSuffix(filepath.Base(ps.file), ".toml"); ok && s != stem {
			return ps.errorf(line, key, "name %q does not match the file name %q; rename the file to %s.toml or set name = %q", s, filepath.Base(ps.file), s, stem)
		}
		d.Name = s
	case "version":
		s, err := ps.version(key, v, line)
		if err != nil {
			return err
		}
		d.Version = s
	case "command":
		return ps.command(v, line)
	case "dir":
		s, err := ps.str(key, v, line)
		if err != nil {
			return err
		}
		if err := ps.noNUL(key, s, line); err != nil {
			return err
		}
		if !filepath.IsAbs(s) {
			return ps.errorf(line, key, "dir %q must be an absolute path", s)
		}
		d.Dir = s
	case "handoff":
		if v.Kind != unstable.Bool {
			return ps.errorf(line, key, "handoff must be true or false, not %s", kindName(v))
		}
		b := string(v.Data) == "true"
		ps.handoff = &b
	case "activation":
		s, err := ps.str(key, v, line)
		if err != nil {
			return err
		}
		switch a := Activation(s); a {
		case ActivationPortier, ActivationListenFDs:
			d.Activation = a
		default:
			return ps.errorf(line, key, `activation %q is unknown: use "portier" (the backend uses package backend) or "listen-fds" (systemd-style socket activation)`, s)
		}
	case "idle_timeout":
		dur, err := ps.duration(key, v, line, `"10m" or "0" (never)`)
		if err != nil {
			return err
		}
		if dur > 0 && dur < MinIdleTimeout {
			return ps.errorf(line, key, `idle_timeout %q is too short: use at least %s, or "0" to never stop an idle backend`, string(v.Data), MinIdleTimeout)
		}
		d.IdleTimeout = dur
	case "start_timeout":
		dur, err := ps.duration(key, v, line, `"10s"`)
		if err != nil {
			return err
		}
		if dur <= 0 || dur > MaxStartTimeout {
			return ps.errorf(line, key, "start_timeout %q must be more than 0 and at most %s", string(v.Data), fmtDuration(MaxStartTimeout))
		}
		d.StartTimeout = dur
	case "min_version":
		s, err := ps.version(key, v, line)
		if err != nil {
			return err
		}
		d.MinVersion = s
	case "allow_versions":
		return ps.allowVersions(v, line)
	default:
		delete(ps.lines, key)
		return ps.unknownKey(key, key, line)
	}
	return nil
}

func (ps *parser) unknownKey(full, first string, line int) error {
	if s := suggest(first); s != "" {
		return ps.errorf(line, full, "unknown key %q; did you mean %q?", full, s)
	}
	return ps.errorf(line, full, "unknown key %q; known keys are %s", full, strings.Join(knownKeys, ", "))
}

// suggest returns the known key closest to k when it is a likely typo.
func suggest(k string) string {
	best, bestDist := "", 3
	for _, known := range knownKeys {
		if d := editDistance(strings.ToLower(k), known); d < bestDist {
			best, bestDist = known, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance, for typo suggestions.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30 // not a typo of a short key
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func (ps *parser) setEnv(parts []string, v *unstable.Node, line int) error {
	full := "env." + dotted(parts)
	if len(parts) != 1 {
		return ps.errorf(line, full, "%s: env holds NAME = \"value\" pairs, not nested tables", full)
	}
	name := parts[0]
	if !validEnvName(name) {
		return ps.errorf(line, full, "env name %q is not a valid variable name: use letters, digits and '_', not starting with a digit", name)
	}
	if strings.HasPrefix(name, "PORTIER_") || strings.HasPrefix(name, "LISTEN_") {
		return ps.errorf(line, full, "env name %q is reserved: the broker sets PORTIER_* and LISTEN_* for the backend itself", name)
	}
	lkey := "env\x00" + name // not "env."+name: that could collide with a top-level key's line record
	if prev, ok := ps.lines[lkey]; ok {
		return ps.errorf(line, full, "%s is set twice (first on line %d)", full, prev)
	}
	ps.lines[lkey] = line
	if v.Kind != unstable.String {
		return ps.errorf(line, full, "%s", notString(full, v))
	}
	s := string(v.Data)
	if err := ps.noNUL(full, s, line); err != nil {
		return err
	}
	if ps.d.Env == nil {
		ps.d.Env = make(map[string]string)
	}
	ps.d.Env[name] = s
	return nil
}

func validEnvName(s string) bool {
	if s == "" || len(s) > 256 || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func (ps *parser) str(key string, v *unstable.Node, line int) (string, error) {
	if v.Kind != unstable.String {
		return "", ps.errorf(line, key, "%s", notString(key, v))
	}
	return string(v.Data), nil
}

func (ps *parser) noNUL(key, s string, line int) error {
	if strings.IndexByte(s, 0) >= 0 {
		return ps.errorf(line, key, "%s contains a NUL character, which no program argument, path or variable can hold", key)
	}
	return nil
}

func (ps *parser) version(key string, v *unstable.Node, line int) (string, error) {
	s, err := ps.str(key, v, line)
	if err != nil {
		return "", err
	}
	if err := checkVersion(s); err != nil {
		return "", ps.errorf(line, key, "%s %q is not a valid version: %v", key, s, err)
	}
	return s, nil
}

// checkVersion accepts what the wire accepts in wanted_version and what
// parseSemver can order.
func checkVersion(s string) error {
	if _, err := parseSemver(s); err != nil {
		return fmt.Errorf(`%v (want MAJOR.MINOR.PATCH[-prerelease], e.g. "1.2.3" or "1.3.0-rc.1")`, err)
	}
	if !wire.ValidVersion(s) { // parseSemver is stricter; this is a guard against drift
		return fmt.Errorf("not accepted by the wire protocol")
	}
	return nil
}

func (ps *parser) duration(key string, v *unstable.Node, line int, example string) (time.Duration, error) {
	if v.Kind != unstable.String {
		return 0, ps.errorf(line, key, "%s must be a duration string such as %s, not %s", key, example, kindName(v))
	}
	s := string(v.Data)
	if s == "0" {
		return 0, nil
	}
	dur, err := time.ParseDuration(s)
	if err != nil {
		return 0, ps.errorf(line, key, "%s %q is not a duration: write a number with a unit (ms, s, m, h), such as %s", key, s, example)
	}
	if dur < 0 {
		return 0, ps.errorf(line, key, "%s %q must not be negative", key, s)
	}
	return dur, nil
}

func (ps *parser) command(v *unstable.Node, line int) error {
	if v.Kind != unstable.Array {
		return ps.errorf(line, "command", `command must be an array such as ["/usr/bin/prog", "--flag"], not %s`, kindName(v))
	}
	var cmd []string
	it := v.Children()
	for i := 0; it.Next(); i++ {
		el := it.Node()
		eline := ps.line(el, line)
		key := fmt.Sprintf("command[%d]", i)
		if el.Kind != unstable.String {
			return ps.errorf(eline, "command", "%s", notString(key, el))
		}
		s := string(el.Data)
		if err := ps.noNUL(key, s, eline); err != nil {
			return err
		}
		if i == 0 && !filepath.IsAbs(s) {
			return ps.errorf(eline, "command", "command[0] %q must be an absolute path", s)
		}
		cmd = append(cmd, s)
	}
	if len(cmd) == 0 {
		return ps.errorf(line, "command", `command is empty: give the program's absolute path and its arguments, e.g. ["/usr/bin/prog", "--flag"]`)
	}
	ps.d.Command = cmd
	return nil
}

func (ps *parser) allowVersions(v *unstable.Node, line int) error {
	const key = "allow_versions"
	if v.Kind != unstable.Array {
		return ps.errorf(line, key, `allow_versions must be an array such as ["1.0.0", "1.1.0"], not %s`, kindName(v))
	}
	var out []string
	it := v.Children()
	for i := 0; it.Next(); i++ {
		el := it.Node()
		eline := ps.line(el, line)
		if el.Kind != unstable.String {
			return ps.errorf(eline, key, "allow_versions[%d] must be a version string, not %s", i, kindName(el))
		}
		s := string(el.Data)
		if err := checkVersion(s); err != nil {
			return ps.errorf(eline, key, "allow_versions[%d] %q is not a valid version: %v", i, s, err)
		}
		if j := slices.Index(out, s); j >= 0 {
			return ps.errorf(eline, key, "allow_versions[%d] %q repeats allow_versions[%d]", i, s, j)
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return ps.errorf(line, key, "allow_versions is empty: list the versions clients may ask for, or remove the key to accept only version")
	}
	ps.d.AllowVersions = out
	return nil
}

// finish checks what needs more than one key.
func (ps *parser) finish() error {
	d := ps.d
	for _, k := range []string{"name", "version", "command"} {
		if _, ok := ps.lines[k]; !ok {
			return ps.errorf(0, k, "missing required key %q", k)
		}
	}
	ver, _ := parseSemver(d.Version) // validated when set
	if d.MinVersion != "" {
		if _, ok := ps.lines["allow_versions"]; ok {
			line := max(ps.lines["min_version"], ps.lines["allow_versions"])
			return ps.errorf(line, "min_version", "min_version and allow_versions exclude each other: use min_version for a range, allow_versions for a list")
		}
		mv, _ := parseSemver(d.MinVersion)
		if compareSemver(mv, ver) > 0 {
			return ps.errorf(ps.lines["min_version"], "min_version", "min_version %q is newer than version %q, so no client version could be served; lower min_version or raise version", d.MinVersion, d.Version)
		}
	}
	for i, a := range d.AllowVersions {
		if av, _ := parseSemver(a); compareSemver(av, ver) > 0 {
			return ps.errorf(ps.lines["allow_versions"], "allow_versions", "allow_versions[%d] %q is newer than version %q: a build cannot serve a version newer than itself", i, a, d.Version)
		}
	}
	switch {
	case d.Activation == ActivationListenFDs && ps.handoff != nil && *ps.handoff:
		return ps.errorf(ps.lines["handoff"], "handoff", `handoff = true needs activation = "portier": a listen-fds backend is reached only through its own socket; remove handoff or set it to false`)
	case d.Activation == ActivationListenFDs:
		d.Handoff = false
	case ps.handoff != nil:
		d.Handoff = *ps.handoff
	default:
		d.Handoff = true
	}
	return nil
}

// Allows reports whether a client that wants version wanted may be served
// by this build:
//
//   - with allow_versions, wanted must be one of them (list version itself
//     if clients may ask for it);
//   - with min_version, wanted must lie in [min_version, version] by SemVer
//     precedence: the build is compatible back to its minimum, and it
//     cannot serve a version newer than itself. Pre-releases take part in
//     the ordering like any version (1.0.0 < 1.1.0-rc.1 < 1.1.0);
//   - otherwise wanted must equal version.
//
// A wanted that is not a valid version (the empty string included: every
// Hello names a version) is not allowed; see AtLeast for a client that
// takes whatever version the definition names.
func (d *Definition) Allows(wanted string) bool {
	w, err := parseSemver(wanted)
	if err != nil {
		return false
	}
	if len(d.AllowVersions) > 0 {
		for _, a := range d.AllowVersions {
			if av, err := parseSemver(a); err == nil && compareSemver(w, av) == 0 {
				return true
			}
		}
		return false
	}
	v, err := parseSemver(d.Version)
	if err != nil {
		return false
	}
	if d.MinVersion != "" {
		m, err := parseSemver(d.MinVersion)
		return err == nil && compareSemver(w, m) >= 0 && compareSemver(w, v) <= 0
	}
	return compareSemver(w, v) == 0
}

// AtLeast reports whether this build's version is floor or newer by SemVer
// precedence. It is the version policy for a client that takes whatever
// version the definition names as long as it is not older than floor (the
// CapAnyVersion Hello extension); min_version and allow_versions, which
// judge the version a client names, do not apply to it. An invalid floor is
// not satisfied.
func (d *Definition) AtLeast(floor string) bool {
	f, err := parseSemver(floor)
	if err != nil {
		return false
	}
	v, err := parseSemver(d.Version)
	return err == nil && compareSemver(v, f) >= 0
}

func dotted(parts []string) string {
	q := make([]string, len(parts))
	for i, p := range parts {
		if validBareKey(p) {
			q[i] = p
		} else {
			q[i] = fmt.Sprintf("%q", p)
		}
	}
	return strings.Join(q, ".")
}

func validBareKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// notString is the message for a value of the wrong type where a string
// belongs; quoting is the fix only for a scalar.
func notString(what string, n *unstable.Node) string {
	msg := fmt.Sprintf("%s must be a string, not %s", what, kindName(n))
	if n.Kind != unstable.Array && n.Kind != unstable.InlineTable {
		msg += "; quote it"
	}
	return msg
}

// kindName names a TOML value's type for messages ("an integer").
func kindName(n *unstable.Node) string {
	switch n.Kind {
	case unstable.String:
		return "a string"
	case unstable.Bool:
		return "a boolean"
	case unstable.Integer:
		return "an integer"
	case unstable.Float:
		return "a float"
	case unstable.Array:
		return "an array"
	case unstable.InlineTable:
		return "a table"
	case unstable.LocalDate, unstable.LocalTime, unstable.LocalDateTime, unstable.DateTime:
		return "a date/time"
	default:
		return "a " + n.Kind.String()
	}
}

// fmtDuration prints whole minutes as "5m" rather than "5m0s".
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
