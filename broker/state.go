package broker

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/portier/portier/internal/ipc"
)

// stateFileName is the broker's record of live backends, in the private
// state directory. A restarted broker re-adopts a backend only when the
// record's pid, start time and secret hash all still match.
const stateFileName = "state.json"

// stateRecord is one live backend. The secret itself is never stored, only
// its SHA-256.
type stateRecord struct {
	Service      string `json:"service"`
	Version      string `json:"version"`
	PID          int    `json:"pid"`
	StartTime    uint64 `json:"start_time"`
	Exe          string `json:"exe,omitempty"`
	ExeSHA256    string `json:"exe_sha256,omitempty"`
	Endpoint     string `json:"endpoint"`
	SecretSHA256 string `json:"secret_sha256"`
	ListenFDs    bool   `json:"listen_fds,omitempty"`
	StartedUnix  int64  `json:"started_unix"`

	// ExeStamp is the program's stamp when the backend was started, so
	// a broker that re-adopts it still sees a rebuild (retire.go).
	ExeStamp *exeStamp `json:"exe_stamp,omitempty"`
}

type stateFile struct {
	Version  int           `json:"version"`
	Backends []stateRecord `json:"backends"`
}

func (s *supervisor) statePath() string { return filepath.Join(s.b.cfg.StateDir, stateFileName) }

// saveState writes the state file atomically (temp file, fsync, rename),
// mode 0600. Saves are serialized from snapshot to rename: two concurrent
// ones (a backend's first save as it becomes ready, and the one after its
// executable was hashed) could otherwise land in the wrong order and leave
// the older snapshot, without the executable's hash, as the file.
func (s *supervisor) saveState() {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	st := stateFile{Version: 1}
	s.mu.Lock()
	for _, p := range s.byPID {
		if p.gone.Load() || !isClosed(p.ready) || p.readyErr != nil {
			continue
		}
		r := stateRecord{
			Service: p.service, Version: p.version, PID: p.pid, StartTime: p.startTime,
			Exe: p.exe, ExeSHA256: p.exeSHA256, Endpoint: p.endpoint,
			SecretSHA256: hex.EncodeToString(p.secretHash[:]), ListenFDs: p.listenFDs,
			StartedUnix: p.started.Unix(),
		}
		if p.stamp != (exeStamp{}) {
			stamp := p.stamp
			r.ExeStamp = &stamp
		}
		st.Backends = append(st.Backends, r)
	}
	s.mu.Unlock()
	data, err := json.MarshalIndent(st, "", "  ")
	if err == nil {
		err = writeFileAtomic(s.statePath(), data)
	}
	if err != nil {
		s.b.log.Warn("could not write the broker state file", "path", s.statePath(), "err", err)
	}
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".state-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// loadState re-adopts the backends a previous broker recorded. A record is
// kept only while its process runs (not a zombie) with the recorded start
// time and its service is still defined; a portier backend must then
// re-register with the recorded secret within ReadoptWait. Hellos for its
// service wait for that; if it exits first (seen at once where an exit
// watch exists) or does not re-register in time, they start a new backend
// instead. Backend sockets that no kept record owns are removed: their
// backends died while no broker watched.
func (s *supervisor) loadState() {
	defer s.sweepEndpoints()
	data, err := os.ReadFile(s.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var st stateFile
	if err == nil {
		err = json.Unmarshal(data, &st)
	}
	if err != nil {
		s.b.log.Warn("ignoring unreadable broker state file", "path", s.statePath(), "err", err)
		return
	}
	kept := 0
	for _, r := range st.Backends {
		if !processMatches(r.PID, r.StartTime) {
			s.b.log.Info("dropping state record of a gone backend", "service", r.Service, "pid", r.PID)
			continue
		}
		def, err := s.b.defs.Lookup(r.Service)
		if err != nil || def.Version != r.Version {
			s.b.log.Info("dropping state record whose definition changed", "service", r.Service, "version", r.Version, "pid", r.PID)
			continue
		}
		hash, err := hex.DecodeString(r.SecretSHA256)
		if err != nil || len(hash) != sha256.Size {
			continue
		}
		p, err := s.newProc(def)
		if err != nil {
			continue
		}
		p.endpoint, p.pid, p.startTime, p.exe, p.exeSHA256 = r.Endpoint, r.PID, r.StartTime, r.Exe, r.ExeSHA256
		p.started = time.Unix(r.StartedUnix, 0)
		p.listenFDs = r.ListenFDs
		if r.ExeStamp != nil {
			p.stamp = *r.ExeStamp
		} // else unknown: matches any (a record of a broker before stamps)
		copy(p.secretHash[:], hash)
		w, err := newExitWatch(p.pid, p.startTime)
		if errors.Is(err, errProcessGone) {
			s.b.log.Info("dropping state record of a gone backend", "service", r.Service, "pid", r.PID)
			continue
		}
		p.watch = w // nil without an exit watch: the janitor polls
		s.mu.Lock()
		s.procs[p.procKey] = p
		s.byPID[p.pid] = p
		s.mu.Unlock()
		kept++
		if w != nil {
			// Counted with the connections, so Serve waits for it (shutdown
			// closes the watch).
			s.b.conns.Add(1)
			go func() {
				defer s.b.conns.Done()
				if w.wait() {
					s.exited(p, s.b.log, errors.New("re-adopted backend exited"))
				} else if !p.alive() {
					// The watch failed rather than being closed: the
					// other paths leave watched backends to it.
					s.exited(p, s.b.log, errors.New("re-adopted backend is gone"))
				}
			}()
		}
		if p.listenFDs {
			p.markReady(nil)
			continue
		}
		p.readoptTimer = time.AfterFunc(s.b.cfg.ReadoptWait, func() { s.readoptExpired(p) })
	}
	if kept > 0 {
		s.b.log.Info("re-adopting backends from the state file", "count", kept)
	}
}

// readoptExpired gives up on a re-adopted backend that has not
// re-registered within ReadoptWait: the broker forgets it (a later
// registration is refused, and the backend SDK then closes its listener and
// exits), and the Hellos waiting for it start a new backend.
func (s *supervisor) readoptExpired(p *proc) {
	p.markReady(errBackendGone)
	if p.readyErr != errBackendGone || p.gone.Load() {
		return // it registered just now, or exited (exited said so)
	}
	s.b.log.Warn("re-adopted backend did not re-register; starting a new one on demand",
		"service", p.service, "version", p.version, "pid", p.pid, "waited", s.b.cfg.ReadoptWait)
	s.forget(p)
	if p.watch != nil {
		p.watch.close()
	}
}

// sweepEndpoints removes backend sockets in the broker's directory that no
// known backend owns: a backend that dies while no broker watches leaves
// its socket file behind. It runs before the broker starts any backend, so
// every live backend it could own is in the tables (a backend a previous
// broker started but never recorded is refused when it registers, and
// exits).
func (s *supervisor) sweepEndpoints() {
	s.mu.Lock()
	known := make(map[string]bool, len(s.byPID))
	for _, p := range s.byPID {
		known[p.endpoint] = true
	}
	s.mu.Unlock()
	for _, path := range backendEndpoints(s.b.cfg.Socket) {
		if !known[path] {
			s.b.log.Info("removing the socket of a gone backend", "path", path)
			removeEndpoint(path)
		}
	}
}

// processMatches reports whether pid runs (and has not exited: a zombie
// has) with the given start time.
func processMatches(pid int, startTime uint64) bool {
	return ipc.ProcessRunning(pid, startTime)
}

// recordExe notes the registered backend's executable and its SHA-256 for
// the state file, off the registration path.
func (s *supervisor) recordExe(p *proc) {
	exe, err := ipc.ExecutablePath(p.pid)
	if err != nil {
		return
	}
	sum := ""
	if f, err := os.Open(exe); err == nil {
		h := sha256.New()
		if _, err := io.Copy(h, f); err == nil {
			sum = hex.EncodeToString(h.Sum(nil))
		}
		f.Close()
	}
	s.mu.Lock()
	p.exe, p.exeSHA256 = exe, sum
	s.mu.Unlock()
	s.saveState()
}

// reapAdopted notices re-adopted backends (not our children, so no Wait)
// that have exited and have no exit watch to say so.
func (s *supervisor) reapAdopted() {
	for _, p := range s.snapshot() {
		if !p.child && p.watch == nil && !p.alive() {
			s.exited(p, s.b.log, errors.New("re-adopted backend is gone"))
		}
	}
}
