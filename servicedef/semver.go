package servicedef

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/portier/portier/wire"
)

// semver is a parsed version in portier's version grammar: the wire's
// MAJOR.MINOR.PATCH[-PRERELEASE] (no build metadata; pre-release
// identifiers use a-z and 0-9), read with the SemVer 2.0.0 rules: no leading
// zeros in numbers, no empty pre-release identifiers.
type semver struct {
	Major, Minor, Patch uint64
	// Prerelease holds the dot-separated pre-release identifiers, nil for a
	// release.
	Prerelease []string
}

// parseSemver parses s. It accepts exactly what wire.ValidVersion accepts,
// minus what SemVer 2.0.0 forbids (leading zeros, empty identifiers), and
// says which part is wrong.
func parseSemver(s string) (semver, error) {
	if len(s) > wire.MaxVersion {
		return semver{}, fmt.Errorf("longer than %d bytes", wire.MaxVersion)
	}
	core, pre, hasPre := strings.Cut(s, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return semver{}, errors.New("not three dot-separated numbers")
	}
	var v semver
	for i, dst := range []*uint64{&v.Major, &v.Minor, &v.Patch} {
		n, err := parseNumber(parts[i])
		if err != nil {
			return semver{}, fmt.Errorf("%s %q: %w", [...]string{"major", "minor", "patch"}[i], parts[i], err)
		}
		*dst = n
	}
	if !hasPre {
		return v, nil
	}
	if pre == "" {
		return semver{}, errors.New("empty pre-release after '-'")
	}
	v.Prerelease = strings.Split(pre, ".")
	for _, id := range v.Prerelease {
		if id == "" {
			return semver{}, errors.New("empty pre-release identifier")
		}
		numeric := true
		for i := 0; i < len(id); i++ {
			c := id[i]
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z':
				numeric = false
			default:
				return semver{}, fmt.Errorf("pre-release %q: only a-z, 0-9 and '.' are allowed", pre)
			}
		}
		if numeric && len(id) > 1 && id[0] == '0' {
			return semver{}, fmt.Errorf("pre-release identifier %q has a leading zero", id)
		}
	}
	return v, nil
}

func parseNumber(s string) (uint64, error) {
	if s == "" {
		return 0, errors.New("empty")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("not a number")
		}
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, errors.New("leading zero")
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, errors.New("too large")
	}
	return n, nil
}

// String formats v in the canonical form parseSemver accepts.
func (v semver) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
	if len(v.Prerelease) > 0 {
		s += "-" + strings.Join(v.Prerelease, ".")
	}
	return s
}

// compareSemver orders versions by SemVer 2.0.0 precedence and returns -1, 0 or
// +1: numbers compare numerically; a pre-release sorts before its release
// (1.0.0-rc.1 < 1.0.0); pre-releases compare identifier by identifier,
// numeric identifiers numerically and below alphanumeric ones, and a
// shorter list of otherwise equal identifiers first.
func compareSemver(a, b semver) int {
	for _, p := range [][2]uint64{{a.Major, b.Major}, {a.Minor, b.Minor}, {a.Patch, b.Patch}} {
		if p[0] != p[1] {
			if p[0] < p[1] {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(a.Prerelease) == 0 && len(b.Prerelease) == 0:
		return 0
	case len(a.Prerelease) == 0:
		return 1
	case len(b.Prerelease) == 0:
		return -1
	}
	for i := 0; i < len(a.Prerelease) && i < len(b.Prerelease); i++ {
		if c := compareIdent(a.Prerelease[i], b.Prerelease[i]); c != 0 {
			return c
		}
	}
	switch {
	case len(a.Prerelease) < len(b.Prerelease):
		return -1
	case len(a.Prerelease) > len(b.Prerelease):
		return 1
	}
	return 0
}

func compareIdent(x, y string) int {
	xn, yn := isNumeric(x), isNumeric(y)
	switch {
	case xn && yn:
		// No leading zeros, so the longer number is the larger one, and
		// arbitrarily long identifiers never overflow.
		if len(x) != len(y) {
			if len(x) < len(y) {
				return -1
			}
			return 1
		}
		return strings.Compare(x, y)
	case xn:
		return -1
	case yn:
		return 1
	}
	return strings.Compare(x, y)
}

func isNumeric(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
