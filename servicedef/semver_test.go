package servicedef

import (
	"strings"
	"testing"

	"github.com/portier/portier/wire"
)

func TestParseSemver(t *testing.T) {
	for _, s := range []string{"0.0.0", "1.2.3", "10.20.30", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-0.3.7",
		"1.0.0-x.7.z.92", "18446744073709551615.0.0", "1.0.0-99999999999999999999999999"} {
		v, err := parseSemver(s)
		if err != nil {
			t.Errorf("%q: %v", s, err)
			continue
		}
		if v.String() != s {
			t.Errorf("%q: String() = %q", s, v.String())
		}
		if !wire.ValidVersion(s) {
			t.Errorf("%q parses but the wire refuses it", s)
		}
	}
	for s, want := range map[string]string{
		"":                                 "not three dot-separated numbers",
		"1.2":                              "not three dot-separated numbers",
		"1.2.3.4":                          "not three dot-separated numbers",
		"v1.2.3":                           `major "v1": not a number`,
		"01.2.3":                           `major "01": leading zero`,
		"1.02.3":                           `minor "02": leading zero`,
		"1.2.03":                           `patch "03": leading zero`,
		"1..3":                             `minor "": empty`,
		"18446744073709551616.0.0":         `major "18446744073709551616": too large`,
		"1.2.3-":                           "empty pre-release after '-'",
		"1.2.3-a..b":                       "empty pre-release identifier",
		"1.2.3-rc.":                        "empty pre-release identifier",
		"1.2.3-RC1":                        `pre-release "RC1": only a-z, 0-9 and '.' are allowed`,
		"1.2.3-rc-1":                       `pre-release "rc-1": only a-z, 0-9 and '.' are allowed`,
		"1.2.3+build":                      `patch "3+build": not a number`,
		"1.2.3-01":                         `pre-release identifier "01" has a leading zero`,
		"1.2.3-" + strings.Repeat("a", 60): "longer than 64 bytes",
	} {
		if _, err := parseSemver(s); err == nil || err.Error() != want {
			t.Errorf("%q: err %v, want %q", s, err, want)
		}
	}
}

func TestCompare(t *testing.T) {
	// Ascending, from the SemVer 2.0.0 spec and then some.
	order := []string{
		"0.9.9", "1.0.0-0", "1.0.0-1", "1.0.0-2", "1.0.0-10", "1.0.0-99999999999999999999", "1.0.0-a",
		"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
		"1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0-rc.1", "1.1.0", "1.10.0", "2.0.0",
		"10.0.0", "18446744073709551615.0.0",
	}
	for i, a := range order {
		va, err := parseSemver(a)
		if err != nil {
			t.Fatal(err)
		}
		for j, b := range order {
			vb, _ := parseSemver(b)
			want := 0
			switch {
			case i < j:
				want = -1
			case i > j:
				want = 1
			}
			if got := compareSemver(va, vb); got != want {
				t.Errorf("compareSemver(%s, %s) = %d, want %d", a, b, got, want)
			}
		}
	}
}

func FuzzParseSemver(f *testing.F) {
	for _, s := range []string{"1.2.3", "1.0.0-rc.1", "0.0.0-0.a", "01.2.3", "1.2.3-", "1.2.3-a..b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseSemver(s)
		if err != nil {
			return
		}
		if v.String() != s {
			t.Fatalf("%q round-trips as %q", s, v.String())
		}
		if !wire.ValidVersion(s) {
			t.Fatalf("%q parses but the wire refuses it", s)
		}
		if compareSemver(v, v) != 0 {
			t.Fatalf("%q does not equal itself", s)
		}
	})
}
