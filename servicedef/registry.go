package servicedef

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portier/portier/internal/ipc"
	"github.com/portier/portier/wire"
)

// ErrUnknown reports that no definition file exists for a service. Lookup
// wraps it with the details; test with errors.Is.
var ErrUnknown = errors.New("servicedef: unknown service")

// ErrUnsafeDir matches every *DirError: the services directory could let
// someone else choose what the broker runs.
var ErrUnsafeDir = errors.New("servicedef: unsafe services directory")

// MaxFileSize caps a definition file; real ones are a few hundred bytes.
const MaxFileSize = 1 << 20

// Problem is the stable code of why a path is refused. It is the one type
// portier uses for unsafe paths, shared with the checks of the broker's
// socket directory.
type Problem = ipc.Problem

// The Problem codes, as they apply to the services directory and its
// definition files.
const (
	ProblemSymlink  = ipc.ProblemSymlink  // the directory is a symbolic link
	ProblemNotDir   = ipc.ProblemNotDir   // the path is not a directory
	ProblemNotOwner = ipc.ProblemNotOwner // owned by neither the current user nor root
	ProblemBadMode  = ipc.ProblemBadMode  // writable by group or others
)

// DirError explains why the services directory is refused and how to fix
// it. It matches ErrUnsafeDir.
type DirError struct {
	Dir     string
	Problem Problem
	Reason  string // what was found and the fix
}

// Error formats the problem and its fix.
func (e *DirError) Error() string {
	return fmt.Sprintf("servicedef: services directory %s refused (%s): %s", e.Dir, e.Problem, e.Reason)
}

// Is makes errors.Is(err, ErrUnsafeDir) true.
func (e *DirError) Is(target error) bool { return target == ErrUnsafeDir }

// racyWindow is how close to the moment we read a file its mtime may be
// for the stat-based change check to be untrustworthy: a filesystem with
// coarse timestamps (FAT: 2 s) can show the same mtime for two different
// writes. Such "racily clean" files are re-read and compared byte for byte
// until they are older than this.
const racyWindow = 2 * time.Second

// fileKey identifies one version of a file as far as stat can tell. Any
// write changes mtime and ctime (at the filesystem's timestamp resolution);
// a rewrite of the same size within one timestamp tick still changes the
// inode if done by rename (the way editors save), and ctime catches a
// chmod/chtimes that restores mtime. What stat cannot see at all, a
// same-size in-place rewrite within one tick, is caught by the racy check.
type fileKey struct {
	mtime time.Time
	ctime time.Time
	size  int64
	dev   uint64
	ino   uint64
}

// sysInfo is what a platform's stat adds to fs.FileInfo.
type sysInfo struct {
	dev, ino uint64
	ctime    time.Time
}

func statKey(fi fs.FileInfo) fileKey {
	k := fileKey{mtime: fi.ModTime(), size: fi.Size()}
	if st, ok := sysStat(fi); ok {
		k.dev, k.ino, k.ctime = st.dev, st.ino, st.ctime
	}
	return k
}

type entry struct {
	key  fileKey
	def  *Definition
	err  error
	data []byte // kept while racy, for the byte-for-byte comparison
	racy bool
	// checked is when the directory and the file were last found
	// unchanged (or loaded), for CacheFor.
	checked time.Time
}

// Registry serves the definitions in one directory. Each Lookup stats
// <dir>/<name>.toml and re-reads and re-parses it only when it changed, so
// a new or edited file is seen by the very next Lookup, without a restart
// and without a watcher goroutine (CacheFor trades that for fewer stats). A
// broken file affects only its own service. A Registry is safe for
// concurrent use.
type Registry struct {
	dir string
	log *slog.Logger

	// keyOf is statKey; tests replace it to simulate a filesystem whose
	// timestamps cannot tell two writes apart.
	keyOf func(fs.FileInfo) fileKey
	// now is time.Now; tests replace it to move CacheFor's clock.
	now   func() time.Time
	fresh time.Duration // CacheFor's d

	// refused is the directory's *DirError text while it is refused, nil
	// while it is accepted: the refusal is logged when it starts or
	// changes, and the recovery once.
	refused atomic.Pointer[string]

	mu    sync.Mutex
	cache map[string]*entry
}

// NewRegistry serves definitions from dir, which need not exist yet (every
// service is then unknown). logger may be nil; it gets one record per
// definition change (loaded, invalid, removed) and per change of the
// directory's verdict (refused, accepted again), never file contents.
func NewRegistry(dir string, logger *slog.Logger) *Registry {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Registry{dir: filepath.Clean(dir), log: logger, keyOf: statKey, now: time.Now, cache: make(map[string]*entry)}
}

// CacheFor lets a Lookup within d of the stats that last found a
// definition unchanged reuse it without looking at the file system (the
// two stats, of the directory and of the file, that every Lookup costs
// otherwise). An edit is then seen by every Lookup that starts more than d
// after it lands, and may be missed by those within d. Unknown services
// are not cached (a new definition is seen at once), nor are files
// modified within the last 2 seconds, which every Lookup re-reads anyway
// (see racyWindow). d <= 0, the default, looks on every Lookup. Call it
// before the Registry is used.
func (r *Registry) CacheFor(d time.Duration) { r.fresh = max(d, 0) }

// Dir is the services directory.
func (r *Registry) Dir() string { return r.dir }

// checkDir refuses a directory someone else could write definitions into.
// It costs one lstat, so it runs on every Lookup that looks at the file
// system and a fixed (or broken) directory is noticed at once; with
// CacheFor, a Lookup that reuses a cached definition skips it, so the
// change is noticed within d. exists is false when dir is missing.
func (r *Registry) checkDir() (exists bool, err error) {
	exists, err = r.statDir()
	var de *DirError
	switch {
	case errors.As(err, &de):
		msg := de.Error()
		if old := r.refused.Swap(&msg); old == nil || *old != msg {
			r.log.Warn("services directory refused: no service can start until it is fixed",
				"dir", de.Dir, "problem", string(de.Problem), "fix", de.Reason)
		}
	case err == nil && r.refused.Load() != nil:
		if r.refused.Swap(nil) != nil {
			r.log.Info("services directory accepted again", "dir", r.dir)
		}
	}
	return exists, err
}

func (r *Registry) statDir() (exists bool, err error) {
	fi, err := os.Lstat(r.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("servicedef: services directory: %w", err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		reason := "it is a symbolic link; configure the directory it points to instead"
		if real, err := filepath.EvalSymlinks(r.dir); err == nil {
			reason = fmt.Sprintf("it is a symbolic link; configure the real directory %s instead", real)
		}
		return false, &DirError{Dir: r.dir, Problem: ProblemSymlink, Reason: reason}
	}
	if !fi.IsDir() {
		return false, &DirError{Dir: r.dir, Problem: ProblemNotDir, Reason: "it is not a directory"}
	}
	if problem, reason := unsafePerm(fi, r.dir, "definitions"); problem != "" {
		return false, &DirError{Dir: r.dir, Problem: problem, Reason: reason}
	}
	return true, nil
}

// Lookup returns the current definition of service name. A missing file
// (or directory) yields an error matching ErrUnknown; an invalid file its
// *Error (other services are unaffected); an unsafe directory a *DirError.
// The returned Definition is shared: do not modify it.
func (r *Registry) Lookup(name string) (*Definition, error) {
	if !wire.ValidServiceName(name) {
		return nil, fmt.Errorf("%w: %q is not a valid service name", ErrUnknown, name)
	}
	if r.fresh > 0 {
		now := r.now()
		r.mu.Lock()
		e := r.cache[name]
		if e != nil && !e.racy && now.Sub(e.checked) < r.fresh {
			r.mu.Unlock()
			return e.def, e.err
		}
		r.mu.Unlock()
	}
	exists, err := r.checkDir()
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !exists {
		r.forgetLocked(name)
		return nil, fmt.Errorf("%w: %q (the services directory %s does not exist)", ErrUnknown, name, r.dir)
	}
	return r.lookupLocked(name)
}

func (r *Registry) forgetLocked(name string) {
	if _, ok := r.cache[name]; ok {
		delete(r.cache, name)
		r.log.Info("service definition removed", "service", name)
	}
}

func (r *Registry) lookupLocked(name string) (*Definition, error) {
	path := filepath.Join(r.dir, name+".toml")
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		r.forgetLocked(name)
		return nil, fmt.Errorf("%w: %q (no %s)", ErrUnknown, name, path)
	}
	if err != nil {
		return nil, fmt.Errorf("servicedef: %w", err)
	}
	old := r.cache[name]
	if old != nil && !old.racy && old.key == r.keyOf(fi) {
		old.checked = r.now()
		return old.def, old.err
	}
	checked := r.now()
	e := r.load(path, fi, old)
	e.checked = checked
	if old == nil || e.def != old.def || e.err != old.err {
		if e.err != nil {
			r.log.Warn("invalid service definition", "service", name, "err", e.err)
		} else {
			r.log.Info("service definition loaded", "service", name, "version", e.def.Version, "file", path)
		}
	}
	r.cache[name] = e
	return e.def, e.err
}

// load reads and parses path. When old is a racy entry and the bytes are
// unchanged, its result is kept rather than parsed again.
func (r *Registry) load(path string, fi fs.FileInfo, old *entry) *entry {
	fail := func(msg string, args ...any) *entry {
		return &entry{key: r.keyOf(fi), err: &Error{File: path, Msg: fmt.Sprintf(msg, args...)}, racy: true}
	}
	if !fi.Mode().IsRegular() {
		// Checked before opening: opening a FIFO would block.
		return fail("not a regular file; a service definition must be a plain file")
	}
	readAt := time.Now()
	// Non-blocking, because the check above is racy: the path may have
	// become a FIFO since the stat, and a blocking open would then hang
	// this Lookup, and every later one behind r.mu, until a writer
	// appeared. A FIFO opened this way is refused by the fstat below.
	f, err := os.OpenFile(path, os.O_RDONLY|openNonblock, 0)
	if err != nil {
		// Not a problem of the definition (it may be out of descriptors):
		// keep the cause inspectable with errors.Is.
		return &entry{key: r.keyOf(fi), err: fmt.Errorf("servicedef: open %s: %w", path, err), racy: true}
	}
	defer f.Close()
	fi, err = f.Stat() // describe exactly the file we read
	if err != nil {
		return fail("cannot stat: %v", err)
	}
	if !fi.Mode().IsRegular() {
		return fail("not a regular file; a service definition must be a plain file")
	}
	if problem, reason := unsafePerm(fi, path, "this definition"); problem != "" {
		return &entry{key: r.keyOf(fi), err: &Error{File: path, Msg: reason}}
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return fail("cannot read: %v", err)
	}
	if len(data) > MaxFileSize {
		return &entry{key: r.keyOf(fi), err: &Error{File: path, Msg: fmt.Sprintf("file is larger than %d bytes; a service definition is a few lines of TOML", MaxFileSize)}}
	}
	e := &entry{key: r.keyOf(fi)}
	// Racily clean: modified so close to now that a later write could
	// leave the same stat key behind. Keep the bytes to compare.
	if fi.ModTime().After(readAt.Add(-racyWindow)) {
		e.racy, e.data = true, data
	}
	if old != nil && old.data != nil && bytes.Equal(old.data, data) {
		e.def, e.err = old.def, old.err
		return e
	}
	def, err := Parse(path, data)
	if err != nil {
		e.err = err
		return e
	}
	def.ModTime = fi.ModTime()
	e.def = def
	return e
}

// Entry is one definition file as List sees it.
type Entry struct {
	// Name is the file's stem, the service name it claims.
	Name string
	// File is the file's path.
	File string
	// Def is the definition; nil when Err is set.
	Def *Definition
	// Err says why the file is not a usable definition.
	Err error
}

// List returns every <name>.toml in the directory, sorted by name, each
// with its definition or its error (for portier services). Hidden files
// (".name.toml", editor leftovers) are skipped. A missing directory lists
// as empty; an unsafe one is an error.
func (r *Registry) List() ([]Entry, error) {
	exists, err := r.checkDir()
	if err != nil || !exists {
		return nil, err
	}
	ents, err := os.ReadDir(r.dir) // sorted by file name
	if err != nil {
		return nil, fmt.Errorf("servicedef: list services: %w", err)
	}
	var out []Entry
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, de := range ents {
		name, ok := strings.CutSuffix(de.Name(), ".toml")
		if !ok || strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(r.dir, de.Name())
		if !wire.ValidServiceName(name) {
			out = append(out, Entry{Name: name, File: path, Err: &Error{File: path,
				Msg: "the file name is not a valid service name: rename it to <name>.toml with 1 to 64 characters from a-z, 0-9 and '-'"}})
			continue
		}
		def, err := r.lookupLocked(name)
		if errors.Is(err, ErrUnknown) {
			continue // removed since ReadDir
		}
		out = append(out, Entry{Name: name, File: path, Def: def, Err: err})
	}
	return out, nil
}
