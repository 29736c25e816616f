//go:build unix

package servicedef

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// servicesDir returns a fresh 0700 directory.
func servicesDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "services")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

func def(name, version string) string {
	return fmt.Sprintf("name = %q\nversion = %q\ncommand = [\"/usr/bin/%s\"]\n", name, version, name)
}

func write(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func lookupVersion(t *testing.T, r *Registry, name string) string {
	t.Helper()
	d, err := r.Lookup(name)
	if err != nil {
		t.Fatalf("Lookup(%q): %v", name, err)
	}
	return d.Version
}

func TestRegistryLookup(t *testing.T) {
	dir := servicesDir(t)
	p := write(t, dir, "echo.toml", def("echo", "1.0.0"))
	r := NewRegistry(dir, nil)
	d, err := r.Lookup("echo")
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	if d.File != p || !d.ModTime.Equal(fi.ModTime()) || d.Name != "echo" {
		t.Errorf("got %+v", d)
	}
	// Unchanged: the very same parsed value comes back.
	if d2, _ := r.Lookup("echo"); d2 != d {
		t.Error("unchanged file was parsed again")
	}
	if r.Dir() != dir {
		t.Errorf("Dir() = %q", r.Dir())
	}
}

func TestRegistryUnknown(t *testing.T) {
	dir := servicesDir(t)
	r := NewRegistry(dir, nil)
	for _, name := range []string{"nope", "../services/echo", "Echo", ""} {
		if _, err := r.Lookup(name); !errors.Is(err, ErrUnknown) {
			t.Errorf("Lookup(%q): %v, want ErrUnknown", name, err)
		}
	}
	// Removed after being cached.
	p := write(t, dir, "echo.toml", def("echo", "1.0.0"))
	lookupVersion(t, r, "echo")
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Lookup("echo"); !errors.Is(err, ErrUnknown) {
		t.Errorf("after removal: %v, want ErrUnknown", err)
	}
	// A directory that does not exist yet: everything is unknown.
	r2 := NewRegistry(filepath.Join(dir, "missing"), nil)
	if _, err := r2.Lookup("echo"); !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing dir: %v", err)
	}
	if l, err := r2.List(); err != nil || len(l) != 0 {
		t.Errorf("List of missing dir: %v, %v", l, err)
	}
}

// An edit must be seen by the very next Lookup, even when it keeps the
// size and lands within the same timestamp tick.
func TestRegistrySeesEdits(t *testing.T) {
	dir := servicesDir(t)
	r := NewRegistry(dir, nil)
	p := write(t, dir, "echo.toml", def("echo", "1.0.0"))
	if v := lookupVersion(t, r, "echo"); v != "1.0.0" {
		t.Fatal(v)
	}

	// In place, same size, same inode.
	write(t, dir, "echo.toml", def("echo", "1.0.1"))
	if v := lookupVersion(t, r, "echo"); v != "1.0.1" {
		t.Fatalf("in-place rewrite: still %s", v)
	}

	// In place, same size, and the old mtime put back: ctime (and the
	// racy re-read) still tell.
	before, _ := os.Stat(p)
	write(t, dir, "echo.toml", def("echo", "1.0.2"))
	if err := os.Chtimes(p, before.ModTime(), before.ModTime()); err != nil {
		t.Fatal(err)
	}
	if v := lookupVersion(t, r, "echo"); v != "1.0.2" {
		t.Fatalf("rewrite with restored mtime: still %s", v)
	}

	// Replaced by rename, as editors save.
	tmp := write(t, dir, ".echo.toml.tmp", def("echo", "1.0.3"))
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	if v := lookupVersion(t, r, "echo"); v != "1.0.3" {
		t.Fatalf("rename: still %s", v)
	}

	// Broken, then fixed.
	write(t, dir, "echo.toml", def("echo", "1.0.3")+"bogus = 1\n")
	if _, err := r.Lookup("echo"); err == nil || !strings.Contains(err.Error(), `echo.toml:4: unknown key "bogus"`) {
		t.Fatalf("broken file: %v", err)
	}
	write(t, dir, "echo.toml", def("echo", "2.0.0"))
	if v := lookupVersion(t, r, "echo"); v != "2.0.0" {
		t.Fatalf("fixed file: %s", v)
	}
}

// TestRegistryCacheFor: with CacheFor(d) a Lookup within d of the last
// check reuses the definition without a look at the file system, and every
// Lookup after d sees the edit; an unknown service is never cached, and a
// file modified within the racy window is always looked at.
func TestRegistryCacheFor(t *testing.T) {
	dir := servicesDir(t)
	r := NewRegistry(dir, nil)
	const d = time.Millisecond
	r.CacheFor(d)
	now := time.Now()
	r.now = func() time.Time { return now }
	old := now.Add(-time.Hour) // older than the racy window
	p := write(t, dir, "echo.toml", def("echo", "1.0.0"))
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	if v := lookupVersion(t, r, "echo"); v != "1.0.0" {
		t.Fatal(v)
	}

	write(t, dir, "echo.toml", def("echo", "1.0.10"))
	if err := os.Chtimes(p, old.Add(time.Second), old.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	write(t, dir, "new.toml", def("new", "1.0.0"))
	now = now.Add(d - time.Nanosecond)
	if v := lookupVersion(t, r, "echo"); v != "1.0.0" {
		t.Fatalf("within %s of the last check: %s, want the cached 1.0.0", d, v)
	}
	if v := lookupVersion(t, r, "new"); v != "1.0.0" {
		t.Fatalf("a new definition within %s: %s", d, v)
	}
	now = now.Add(time.Nanosecond)
	if v := lookupVersion(t, r, "echo"); v != "1.0.10" {
		t.Fatalf("%s after the last check: still %s", d, v)
	}

	// Cached means no look at all: a removed directory is noticed only
	// once d has passed.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if v := lookupVersion(t, r, "echo"); v != "1.0.10" {
		t.Fatal(v)
	}
	now = now.Add(d)
	if _, err := r.Lookup("echo"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("after the directory was removed: %v, want ErrUnknown", err)
	}

	// A file modified just now is racy: looked at on every Lookup.
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	write(t, dir, "echo.toml", def("echo", "2.0.0"))
	now = time.Now()
	if v := lookupVersion(t, r, "echo"); v != "2.0.0" {
		t.Fatal(v)
	}
	write(t, dir, "echo.toml", def("echo", "2.0.1"))
	if v := lookupVersion(t, r, "echo"); v != "2.0.1" {
		t.Fatalf("a racy file within %s of its check: still %s", d, v)
	}
}

// sizeOnlyKey simulates a filesystem whose stat cannot tell two same-size
// writes apart (coarse timestamps, no inode change).
func sizeOnlyKey(fi fs.FileInfo) fileKey { return fileKey{size: fi.Size()} }

func TestRegistryRacyRewrite(t *testing.T) {
	dir := servicesDir(t)
	r := NewRegistry(dir, nil)
	r.keyOf = sizeOnlyKey
	p := write(t, dir, "echo.toml", def("echo", "1.0.0"))
	lookupVersion(t, r, "echo")
	// Same size, and stat (as simulated) sees no change. The file is
	// recent, so its cache entry is racy and the bytes are compared.
	write(t, dir, "echo.toml", def("echo", "1.0.1"))
	if v := lookupVersion(t, r, "echo"); v != "1.0.1" {
		t.Fatalf("racy rewrite not seen: %s", v)
	}
	d1, _ := r.Lookup("echo")
	if d2, _ := r.Lookup("echo"); d2 != d1 {
		t.Error("identical bytes were parsed again")
	}

	// Once the file is old, stat alone is trusted: a change that stat
	// cannot see is (by design) not looked for. This is the cost of not
	// reading every file on every Lookup, and why the racy window exists.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	lookupVersion(t, r, "echo") // re-read: racy entries always are; now settled
	write(t, dir, "echo.toml", def("echo", "1.0.2"))
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	if v := lookupVersion(t, r, "echo"); v != "1.0.1" {
		t.Fatalf("settled entry was re-read: %s", v)
	}
}

func TestRegistryBadFileIsolated(t *testing.T) {
	dir := servicesDir(t)
	write(t, dir, "good.toml", def("good", "1.0.0"))
	bad := write(t, dir, "bad.toml", def("bad", "1.0.0")+"dir = \"relative\"\n")
	write(t, dir, "Bad_Name.toml", def("x", "1.0.0"))
	write(t, dir, ".hidden.toml", "garbage")
	write(t, dir, "notes.txt", "garbage")
	if err := os.Mkdir(filepath.Join(dir, "sub.toml"), 0o700); err != nil {
		t.Fatal(err)
	}
	r := NewRegistry(dir, nil)
	_, err := r.Lookup("bad")
	var pe *Error
	if !errors.As(err, &pe) || pe.File != bad || pe.Line != 4 || pe.Key != "dir" {
		t.Fatalf("bad: %v", err)
	}
	if err.Error() != bad+`:4: dir "relative" must be an absolute path` {
		t.Errorf("bad: %q", err)
	}
	lookupVersion(t, r, "good")

	entries, err := r.List()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		s := e.Name + "="
		if e.Err != nil {
			s += "error"
		} else {
			s += e.Def.Version
		}
		got = append(got, s)
	}
	// Sorted by file name; hidden and non-.toml files skipped.
	want := "Bad_Name=error bad=error good=1.0.0 sub=error"
	if strings.Join(got, " ") != want {
		t.Errorf("List: %s, want %s", strings.Join(got, " "), want)
	}
	if e := entries[3]; !strings.Contains(e.Err.Error(), "not a regular file") {
		t.Errorf("directory entry: %v", e.Err)
	}
	if e := entries[0]; e.File != filepath.Join(dir, "Bad_Name.toml") || !strings.Contains(e.Err.Error(), "not a valid service name") {
		t.Errorf("bad name entry: %+v", e)
	}
}

func wantDirError(t *testing.T, err error, problem Problem) *DirError {
	t.Helper()
	var de *DirError
	if !errors.As(err, &de) || de.Problem != problem || !errors.Is(err, ErrUnsafeDir) {
		t.Fatalf("err = %v, want *DirError %s", err, problem)
	}
	return de
}

func TestRegistryUnsafeDir(t *testing.T) {
	dir := servicesDir(t)
	write(t, dir, "echo.toml", def("echo", "1.0.0"))
	r := NewRegistry(dir, nil)
	lookupVersion(t, r, "echo")
	for _, mode := range []os.FileMode{0o770, 0o702, 0o777} {
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		_, err := r.Lookup("echo") // checked on every Lookup, cache or not
		de := wantDirError(t, err, ProblemBadMode)
		if !strings.Contains(de.Error(), "chmod go-w "+dir) {
			t.Errorf("no fix in %q", de.Error())
		}
		if _, err := r.List(); !errors.Is(err, ErrUnsafeDir) {
			t.Errorf("List: %v", err)
		}
	}
	// Readable by others is fine; writable is what matters.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	lookupVersion(t, r, "echo")

	link := filepath.Join(filepath.Dir(dir), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	_, err := NewRegistry(link, nil).Lookup("echo")
	if de := wantDirError(t, err, ProblemSymlink); !strings.Contains(de.Reason, dir) {
		t.Errorf("symlink reason %q does not name the real directory", de.Reason)
	}
	_, err = NewRegistry(filepath.Join(dir, "echo.toml"), nil).Lookup("echo")
	wantDirError(t, err, ProblemNotDir)
}

func TestRegistryDirNotOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a directory away")
	}
	dir := servicesDir(t)
	write(t, dir, "echo.toml", def("echo", "1.0.0"))
	const nobody = 65534
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Skipf("chown: %v", err)
	}
	_, err := NewRegistry(dir, nil).Lookup("echo")
	if de := wantDirError(t, err, ProblemNotOwner); !strings.Contains(de.Reason, "uid 65534") {
		t.Errorf("reason %q", de.Reason)
	}
	// The file is checked too.
	if err := os.Chown(dir, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(dir, "echo.toml"), nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if _, err := NewRegistry(dir, nil).Lookup("echo"); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Errorf("foreign file: %v", err)
	}
}

func TestRegistryUnsafeFile(t *testing.T) {
	dir := servicesDir(t)
	p := write(t, dir, "echo.toml", def("echo", "1.0.0"))
	if err := os.Chmod(p, 0o664); err != nil {
		t.Fatal(err)
	}
	r := NewRegistry(dir, nil)
	_, err := r.Lookup("echo")
	var pe *Error
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "chmod go-w "+p) || pe.Line != 0 {
		t.Fatalf("group-writable file: %v", err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	lookupVersion(t, r, "echo") // fixed: seen at once
}

func TestRegistryOddFiles(t *testing.T) {
	dir := servicesDir(t)
	r := NewRegistry(dir, nil)
	write(t, dir, "big.toml", def("big", "1.0.0")+"# "+strings.Repeat("x", MaxFileSize)+"\n")
	if _, err := r.Lookup("big"); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("big file: %v", err)
	}
	// A FIFO must be refused without opening it (which would block).
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.toml"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Lookup("fifo"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("fifo: %v", err)
	}
	// A symlinked file is followed, and the file it reaches is checked.
	target := write(t, t.TempDir(), "real.toml", def("linked", "1.0.0"))
	if err := os.Symlink(target, filepath.Join(dir, "linked.toml")); err != nil {
		t.Fatal(err)
	}
	lookupVersion(t, r, "linked")
}

// syncBuffer is a concurrency-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRegistryLogsChangesNotSecrets(t *testing.T) {
	dir := servicesDir(t)
	var buf syncBuffer
	r := NewRegistry(dir, slog.New(slog.NewTextHandler(&buf, nil)))
	write(t, dir, "echo.toml", def("echo", "1.0.0")+"env = { TOKEN = \"s3cret-value\" }\n")
	for range 3 {
		lookupVersion(t, r, "echo")
	}
	write(t, dir, "echo.toml", def("echo", "1.0.0")+"env = { TOKEN = 42 }\n")
	for range 3 {
		_, _ = r.Lookup("echo")
	}
	out := buf.String()
	if n := strings.Count(out, "service definition loaded"); n != 1 {
		t.Errorf("%d load records, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "invalid service definition"); n != 1 {
		t.Errorf("%d invalid records, want 1:\n%s", n, out)
	}
	if strings.Contains(out, "s3cret") {
		t.Errorf("log shows an env value:\n%s", out)
	}
}

func TestRegistryConcurrent(t *testing.T) {
	dir := servicesDir(t)
	write(t, dir, "echo.toml", def("echo", "1.0.0"))
	r := NewRegistry(dir, nil)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				d, err := r.Lookup("echo")
				if err == nil && d.Name != "echo" {
					t.Errorf("got %+v", d)
				}
				_, _ = r.List()
			}
		})
	}
	for i := range 50 {
		tmp := write(t, dir, ".tmp", def("echo", fmt.Sprintf("1.0.%d", i)))
		if err := os.Rename(tmp, filepath.Join(dir, "echo.toml")); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if v := lookupVersion(t, r, "echo"); v != "1.0.49" {
		t.Errorf("final version %s", v)
	}
}

// A definition that becomes a FIFO between Lookup's stat and its open must be
// refused, not waited on: a blocking open would hang this Lookup, and every
// later one behind the registry's lock, until some process wrote to it.
func TestRegistryFIFOAfterStat(t *testing.T) {
	dir := servicesDir(t)
	r := NewRegistry(dir, nil)
	p := write(t, dir, "echo.toml", def("echo", "1.0.0"))
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	lookupVersion(t, r, "echo") // cached, not racy: the next Lookup consults keyOf first
	swapped := false
	r.keyOf = func(fi fs.FileInfo) fileKey {
		if !swapped {
			// Runs after Lookup's stat and before its open.
			swapped = true
			if err := os.Remove(p); err != nil {
				t.Error(err)
			}
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Error(err)
			}
			return fileKey{} // "changed": Lookup reloads
		}
		return statKey(fi)
	}
	done := make(chan error, 1)
	go func() {
		_, err := r.Lookup("echo")
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("FIFO swapped in after stat: %v, want a not-a-regular-file error", err)
		}
	case <-time.After(10 * time.Second):
		// Hung in open: release it by opening the write end, then fail.
		if w, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			_ = w.Close()
		}
		<-done
		t.Fatal("Lookup blocked opening a FIFO that replaced the definition after its stat")
	}
}

// An unsafe directory refuses every Lookup; the log says so once per
// verdict, with the problem's code and the fix, and once when it is fixed.
func TestRegistryUnsafeDirLogged(t *testing.T) {
	dir := servicesDir(t)
	write(t, dir, "echo.toml", def("echo", "1.0.0"))
	var buf bytes.Buffer
	r := NewRegistry(dir, slog.New(slog.NewTextHandler(&buf, nil)))
	lookupVersion(t, r, "echo")
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := r.Lookup("echo"); !errors.Is(err, ErrUnsafeDir) {
			t.Fatalf("Lookup: %v", err)
		}
	}
	if _, err := r.List(); !errors.Is(err, ErrUnsafeDir) {
		t.Fatalf("List: %v", err)
	}
	logs := buf.String()
	if n := strings.Count(logs, "services directory refused"); n != 1 {
		t.Fatalf("%d refusal records for one verdict, want 1:\n%s", n, logs)
	}
	for _, want := range []string{"problem=bad_mode", "chmod go-w " + dir} {
		if !strings.Contains(logs, want) {
			t.Errorf("the refusal record lacks %q:\n%s", want, logs)
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	lookupVersion(t, r, "echo")
	lookupVersion(t, r, "echo")
	if n := strings.Count(buf.String(), "services directory accepted again"); n != 1 {
		t.Fatalf("%d recovery records, want 1:\n%s", n, buf.String())
	}
	// Refused again: logged again.
	if err := os.Chmod(dir, 0o770); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Lookup("echo"); !errors.Is(err, ErrUnsafeDir) {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "services directory refused"); n != 2 {
		t.Fatalf("%d refusal records after a second refusal, want 2:\n%s", n, buf.String())
	}
}
