//go:build unix

package servicedef

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// execTree is a private directory with a safe program in it.
func execTree(t *testing.T) (dir, exe string) {
	t.Helper()
	dir = t.TempDir()
	exe = filepath.Join(dir, "backend")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, exe
}

func wantExecError(t *testing.T, err error, problem Problem, path string) *ExecError {
	t.Helper()
	var ee *ExecError
	if !errors.As(err, &ee) || !errors.Is(err, ErrUnsafeExecutable) {
		t.Fatalf("err = %v, want an *ExecError (%s on %s)", err, problem, path)
	}
	if ee.Problem != problem || ee.Path != path {
		t.Fatalf("got %s on %s, want %s on %s (%v)", ee.Problem, ee.Path, problem, path, err)
	}
	if ee.Reason == "" || ee.Fix == "" || !strings.Contains(ee.Error(), path) {
		t.Errorf("error %q (fix %q) does not say what and where", ee.Error(), ee.Fix)
	}
	return ee
}

func chmod(t *testing.T, path string, mode fs.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestCheckExecutableSafe(t *testing.T) {
	dir, exe := execTree(t)
	if err := CheckExecutable(exe); err != nil {
		t.Fatalf("safe program refused: %v", err)
	}
	// A sticky world-writable directory (as /tmp) is safe: others cannot
	// replace the user's entries in it.
	chmod(t, dir, 0o777|fs.ModeSticky)
	if err := CheckExecutable(exe); err != nil {
		t.Fatalf("program in a sticky directory refused: %v", err)
	}
	chmod(t, dir, 0o700)
	// Read-only and group-readable modes are fine; "." and ".." resolve.
	chmod(t, exe, 0o550)
	if err := CheckExecutable(dir + "/./sub/../backend"); err == nil {
		t.Fatal("a path through a missing directory passed")
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := CheckExecutable(dir + "/./sub/../backend"); err != nil {
		t.Fatalf("path with . and ..: %v", err)
	}
	// System programs pass (root owns them and their directories).
	if err := CheckExecutable("/bin/sh"); err != nil {
		t.Fatalf("/bin/sh: %v", err)
	}
}

func TestCheckExecutableWritableProgram(t *testing.T) {
	_, exe := execTree(t)
	for _, mode := range []fs.FileMode{0o777, 0o775, 0o757, 0o722} {
		chmod(t, exe, mode)
		ee := wantExecError(t, CheckExecutable(exe), ProblemBadMode, exe)
		if ee.Fix != "chmod go-w "+exe {
			t.Errorf("fix %q, want chmod go-w", ee.Fix)
		}
	}
}

func TestCheckExecutableWritableDirectory(t *testing.T) {
	dir, exe := execTree(t)
	sub := filepath.Join(dir, "bin")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	exe2 := filepath.Join(sub, "backend")
	if err := os.Rename(exe, exe2); err != nil {
		t.Fatal(err)
	}
	// Every directory on the way is checked, not only the program's own.
	for _, d := range []string{sub, dir} {
		for _, mode := range []fs.FileMode{0o777, 0o770, 0o702} {
			chmod(t, d, mode)
			wantExecError(t, CheckExecutable(exe2), ProblemBadMode, d)
		}
		chmod(t, d, 0o755)
	}
	if err := CheckExecutable(exe2); err != nil {
		t.Fatalf("after the fix: %v", err)
	}
}

// TestCheckExecutableSymlinks: links are resolved one at a time and every
// directory the resolution passes through is checked, including ones that
// appear in neither the written path nor the final one.
func TestCheckExecutableSymlinks(t *testing.T) {
	dir, exe := execTree(t)
	mk := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, b, c := mk("a"), mk("b"), mk("c")
	// a/link -> ../b/link2 (relative), b/link2 -> <dir>/backend (absolute).
	if err := os.Symlink("../b/link2", filepath.Join(a, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(exe, filepath.Join(b, "link2")); err != nil {
		t.Fatal(err)
	}
	cmd := filepath.Join(a, "link")
	if err := CheckExecutable(cmd); err != nil {
		t.Fatalf("safe chain of links: %v", err)
	}
	// b is only passed through while resolving: still checked.
	chmod(t, b, 0o777)
	wantExecError(t, CheckExecutable(cmd), ProblemBadMode, b)
	chmod(t, b, 0o700)
	// The target's own permissions are what count, not the link's.
	chmod(t, exe, 0o777)
	wantExecError(t, CheckExecutable(cmd), ProblemBadMode, exe)
	chmod(t, exe, 0o755)
	// A link to a directory in the middle of the path.
	if err := os.Symlink(dir, filepath.Join(c, "d")); err != nil {
		t.Fatal(err)
	}
	if err := CheckExecutable(filepath.Join(c, "d", "backend")); err != nil {
		t.Fatalf("through a linked directory: %v", err)
	}
	// A loop is an error, but not an unsafe-executable one.
	loop := filepath.Join(c, "loop")
	if err := os.Symlink(loop, loop); err != nil {
		t.Fatal(err)
	}
	if err := CheckExecutable(loop); err == nil || errors.Is(err, ErrUnsafeExecutable) {
		t.Fatalf("loop: %v", err)
	}
}

func TestCheckExecutableNotAProgram(t *testing.T) {
	dir, _ := execTree(t)
	wantExecError(t, CheckExecutable(dir), ProblemNotRegular, dir)
	wantExecError(t, CheckExecutable(dir+"/."), ProblemNotRegular, dir)
	err := CheckExecutable(filepath.Join(dir, "missing"))
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrUnsafeExecutable) {
		t.Fatalf("missing program: %v", err)
	}
	if err := CheckExecutable("relative/backend"); err == nil || errors.Is(err, ErrUnsafeExecutable) {
		t.Fatalf("relative command: %v", err)
	}
}

func TestCheckExecutableForeignOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files away")
	}
	const nobody = 65534
	dir, exe := execTree(t)
	if err := os.Chown(exe, nobody, nobody); err != nil {
		t.Skipf("chown: %v", err)
	}
	ee := wantExecError(t, CheckExecutable(exe), ProblemNotOwner, exe)
	if !strings.Contains(ee.Reason, "uid 65534") || !strings.Contains(ee.Fix, "chown 0 "+exe) {
		t.Errorf("reason %q fix %q", ee.Reason, ee.Fix)
	}
	if err := os.Chown(exe, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	wantExecError(t, CheckExecutable(exe), ProblemNotOwner, dir)
	// A foreign sticky directory is no better: its owner can still replace
	// anything in it.
	chmod(t, dir, 0o777|fs.ModeSticky)
	wantExecError(t, CheckExecutable(exe), ProblemNotOwner, dir)
	if err := os.Chown(dir, 0, 0); err != nil {
		t.Fatal(err)
	}
	chmod(t, dir, 0o700)
	// A link owned by someone else.
	link := filepath.Join(dir, "link")
	if err := os.Symlink(exe, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	wantExecError(t, CheckExecutable(link), ProblemNotOwner, link)
}
