//go:build unix

package ipc

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// privateTemp returns a fresh directory the tests may create things in.
// t.TempDir's own directory is 0755 under the usual umask, so endpoints go
// one level below it.
func privateTemp(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "p")
}

func wantDirProblem(t *testing.T, err error, problem Problem) *DirError {
	t.Helper()
	var de *DirError
	if !errors.As(err, &de) {
		t.Fatalf("err = %v, want *DirError %s", err, problem)
	}
	if de.Problem != problem {
		t.Fatalf("Problem = %q, want %q (%v)", de.Problem, problem, err)
	}
	return de
}

func TestEnsurePrivateDirCreatesParents(t *testing.T) {
	dir := filepath.Join(privateTemp(t), "a", "b")
	if err := EnsurePrivateDir(dir); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Dir(dir)} {
		fi, err := os.Lstat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 || !fi.IsDir() {
			t.Errorf("%s: mode %v, want drwx------", d, fi.Mode())
		}
	}
	// Idempotent on a good existing directory.
	if err := EnsurePrivateDir(dir); err != nil {
		t.Fatal(err)
	}
}

func TestEnsurePrivateDirSymlink(t *testing.T) {
	base := privateTemp(t)
	target := filepath.Join(base, "real")
	if err := os.MkdirAll(target, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	wantDirProblem(t, EnsurePrivateDir(link), ProblemSymlink)
	// A dangling symlink must not be followed and created either.
	dangling := filepath.Join(base, "dangling")
	if err := os.Symlink(filepath.Join(base, "nowhere"), dangling); err != nil {
		t.Fatal(err)
	}
	wantDirProblem(t, EnsurePrivateDir(dangling), ProblemSymlink)
	if _, err := os.Lstat(filepath.Join(base, "nowhere")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("symlink target was created: %v", err)
	}
}

func TestEnsurePrivateDirNotDir(t *testing.T) {
	base := privateTemp(t)
	if err := os.MkdirAll(base, 0o700); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(base, "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	de := wantDirProblem(t, EnsurePrivateDir(f), ProblemNotDir)
	if !strings.Contains(de.Detail, "regular file") {
		t.Errorf("detail %q does not say what was found", de.Detail)
	}
}

func TestEnsurePrivateDirBadMode(t *testing.T) {
	for _, mode := range []os.FileMode{0o755, 0o750, 0o770, 0o701, 0o710, 0o707, 0o500, 0o300, 0o777} {
		dir := privateTemp(t)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		err := EnsurePrivateDir(dir)
		de := wantDirProblem(t, err, ProblemBadMode)
		if !strings.Contains(de.Detail, "chmod 700 "+dir) {
			t.Errorf("mode %o: detail %q lacks the fix", mode, de.Detail)
		}
		// Refused, not repaired.
		if fi, _ := os.Lstat(dir); fi.Mode().Perm() != mode {
			t.Errorf("mode %o was changed to %o", mode, fi.Mode().Perm())
		}
	}
	// Special bits count too.
	dir := privateTemp(t)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	de := wantDirProblem(t, EnsurePrivateDir(dir), ProblemBadMode)
	if !strings.Contains(de.Detail, "1700") {
		t.Errorf("detail %q does not show the sticky bit", de.Detail)
	}
}

func TestEnsurePrivateDirNotOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		// "/" belongs to root; as anybody else it is somebody else's.
		wantDirProblem(t, EnsurePrivateDir("/"), ProblemNotOwner)
		return
	}
	dir := privateTemp(t)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	const nobody = 65534
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Skipf("chown: %v", err)
	}
	de := wantDirProblem(t, EnsurePrivateDir(dir), ProblemNotOwner)
	if !strings.Contains(de.Detail, "uid 65534") {
		t.Errorf("detail %q does not name the owner", de.Detail)
	}
	if !strings.Contains(de.Error(), dir) {
		t.Errorf("error %q does not name the directory", de.Error())
	}
}
