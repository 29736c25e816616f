package servicedef

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/portier/portier/wire"
)

// ErrUnknown: no definition file for the service.
var ErrUnknown = errors.New("servicedef: unknown service")

// ErrUnsafeDir matches *DirError: the services directory could let another
// user define what the broker runs.
var ErrUnsafeDir = errors.New("servicedef: unsafe services directory")

// DirError explains why the services directory is refused and how to fix it.
type DirError struct {
	Dir    string
	Reason string
}

func (e *DirError) Error() string { return fmt.Sprintf("services directory %s: %s", e.Dir, e.Reason) }

// Is matches ErrUnsafeDir.
func (e *DirError) Is(target error) bool { return target == ErrUnsafeDir }

// fileKey identifies one version of a file: a rewrite within the same
// mtime tick still changes size, inode (atomic rename) or ctime.
type fileKey struct {
	mtime, ctime time.Time
	size         int64
	ino          uint64
}

func keyOf(fi fs.FileInfo) fileKey {
	k := fileKey{mtime: fi.ModTime(), size: fi.Size()}
	k.ino, k.ctime, _, _ = sysStat(fi)
	return k
}

type cached struct {
	key fileKey
	def *Definition
	err error
}

// Registry reads definitions from a directory. Lookup stats the file each
// time and re-parses only when it changed, so an added or edited definition
// is seen by the very next lookup, with no watcher goroutine.
type Registry struct {
	dir string
	log *slog.Logger

	mu    sync.Mutex
	cache map[string]cached
}

// NewRegistry reads definitions from dir. logger may be nil.
func NewRegistry(dir string, logger *slog.Logger) *Registry {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Registry{dir: dir, log: logger, cache: make(map[string]cached)}
}

// Dir is the services directory.
func (r *Registry) Dir() string { return r.dir }

// checkDir refuses a directory another user could write to.
func (r *Registry) checkDir() error {
	fi, err := os.Lstat(r.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // no definitions yet: every lookup is ErrUnknown
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		if fi, err = os.Stat(r.dir); err != nil {
			return err
		}
	}
	if !fi.IsDir() {
		return &DirError{Dir: r.dir, Reason: "not a directory"}
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return &DirError{Dir: r.dir, Reason: fmt.Sprintf("mode %04o lets group or others write definitions; run: chmod go-w %s", fi.Mode().Perm(), r.dir)}
	}
	if _, _, uid, ok := sysStat(fi); ok && uid != os.Getuid() {
		return &DirError{Dir: r.dir, Reason: fmt.Sprintf("owned by uid %d, not by you (uid %d)", uid, os.Getuid())}
	}
	return nil
}

// Lookup returns the current definition of name: ErrUnknown when there is
// no file, or the file's *Error when it is invalid (other services are not
// affected).
func (r *Registry) Lookup(name string) (*Definition, error) {
	if !wire.ValidServiceName(name) {
		return nil, ErrUnknown
	}
	if err := r.checkDir(); err != nil {
		return nil, err
	}
	path := filepath.Join(r.dir, name+".toml")
	fi, err := os.Stat(path)
	if err != nil {
		r.mu.Lock()
		delete(r.cache, name)
		r.mu.Unlock()
		if errors.Is(err, fs.ErrNotExist) {
			return nil, ErrUnknown
		}
		return nil, err
	}
	k := keyOf(fi)
	r.mu.Lock()
	c, ok := r.cache[name]
	r.mu.Unlock()
	if ok && c.key == k {
		return c.def, c.err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	def, perr := Parse(path, data)
	if perr != nil {
		r.log.Warn("invalid service definition", "err", perr)
	}
	r.mu.Lock()
	r.cache[name] = cached{key: k, def: def, err: perr}
	r.mu.Unlock()
	return def, perr
}

// Entry is one definition file as List sees it.
type Entry struct {
	Name string
	Def  *Definition // nil when Err is set
	Err  error
}

// List parses every *.toml in the directory, sorted by name.
func (r *Registry) List() ([]Entry, error) {
	if err := r.checkDir(); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(r.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".toml")
		if !ok || e.IsDir() {
			continue
		}
		path := filepath.Join(r.dir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			out = append(out, Entry{Name: name, Err: err})
			continue
		}
		def, err := Parse(path, data)
		out = append(out, Entry{Name: name, Def: def, Err: err})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
