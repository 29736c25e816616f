package servicedef

import (
	"slices"
	"strconv"
	"strings"

	"github.com/portier/portier/wire"
)

// Semver is a parsed MAJOR.MINOR.PATCH[-prerelease] version.
type Semver struct {
	Major, Minor, Patch uint64
	Pre                 []string // dot-separated prerelease identifiers
}

// ParseSemver parses a version the wire package accepts.
func ParseSemver(s string) (Semver, bool) {
	if !wire.ValidVersion(s) {
		return Semver{}, false
	}
	core, pre, _ := strings.Cut(s, "-")
	parts := strings.Split(core, ".")
	var v Semver
	var err error
	if v.Major, err = strconv.ParseUint(parts[0], 10, 64); err != nil {
		return Semver{}, false
	}
	if v.Minor, err = strconv.ParseUint(parts[1], 10, 64); err != nil {
		return Semver{}, false
	}
	if v.Patch, err = strconv.ParseUint(parts[2], 10, 64); err != nil {
		return Semver{}, false
	}
	if pre != "" {
		v.Pre = strings.Split(pre, ".")
	}
	return v, true
}

// Compare orders two valid versions by semver precedence (-1, 0, +1): a
// prerelease sorts before its release; numeric identifiers compare
// numerically and before alphanumeric ones. Invalid versions sort first.
func Compare(a, b string) int {
	va, okA := ParseSemver(a)
	vb, okB := ParseSemver(b)
	switch {
	case !okA && !okB:
		return strings.Compare(a, b)
	case !okA:
		return -1
	case !okB:
		return 1
	}
	for _, c := range [][2]uint64{{va.Major, vb.Major}, {va.Minor, vb.Minor}, {va.Patch, vb.Patch}} {
		if c[0] != c[1] {
			if c[0] < c[1] {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(va.Pre) == 0 && len(vb.Pre) == 0:
		return 0
	case len(va.Pre) == 0:
		return 1
	case len(vb.Pre) == 0:
		return -1
	}
	for i := 0; i < len(va.Pre) && i < len(vb.Pre); i++ {
		if c := comparePre(va.Pre[i], vb.Pre[i]); c != 0 {
			return c
		}
	}
	switch {
	case len(va.Pre) < len(vb.Pre):
		return -1
	case len(va.Pre) > len(vb.Pre):
		return 1
	}
	return 0
}

func comparePre(a, b string) int {
	na, errA := strconv.ParseUint(a, 10, 64)
	nb, errB := strconv.ParseUint(b, 10, 64)
	switch {
	case errA == nil && errB == nil:
		switch {
		case na < nb:
			return -1
		case na > nb:
			return 1
		}
		return 0
	case errA == nil:
		return -1
	case errB == nil:
		return 1
	}
	return strings.Compare(a, b)
}

// Allows reports whether this build serves a client that wants version
// wanted. With allow_versions, wanted must be listed. With min_version,
// wanted must lie in [min_version, version]: the build is compatible back to
// its minimum, and cannot serve a newer version than itself. Otherwise only
// the exact version matches.
func (d *Definition) Allows(wanted string) bool {
	if len(d.AllowVersions) > 0 {
		return slices.Contains(d.AllowVersions, wanted)
	}
	if d.MinVersion != "" {
		return Compare(wanted, d.MinVersion) >= 0 && Compare(wanted, d.Version) <= 0
	}
	return wanted == d.Version
}
