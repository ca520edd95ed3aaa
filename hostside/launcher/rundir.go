package launcher

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultRunBase is where guests keep their sockets, console logs and state:
// $CONFGUEST_RUN_DIR, else /run/confguest for root, else $XDG_RUNTIME_DIR/confguest,
// else a per-user folder in the temporary directory.
func DefaultRunBase() string {
	if d := os.Getenv("CONFGUEST_RUN_DIR"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/run/confguest"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "confguest")
	}
	return filepath.Join(os.TempDir(), "confguest-"+strconv.Itoa(os.Geteuid()))
}

// State is what a launcher records about a running guest in <run dir>/state.json, so
// later commands (exec, ps, logs, stop) can find it and stale state can be told apart.
type State struct {
	Name        string    `json:"name"`
	VMM         string    `json:"vmm"`
	PIDs        []int     `json:"pids"`    // the VMM and its helpers
	VMMPID      int       `json:"vmm_pid"` // the VMM itself; the guest lives while it does
	Launcher    int       `json:"launcher_pid"`
	ContainerID string    `json:"container_id"`
	Command     []string  `json:"command"`
	Created     time.Time `json:"created"`
	Vsock       string    `json:"vsock"`
	Console     string    `json:"console"`
}

const stateFile = "state.json"

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

// CheckName reports whether name is usable for a guest.
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("guest name %q: use 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit: %w", name, ErrBadName)
	}
	return nil
}

// ensureBase creates the run base directory with mode 0700 and refuses one that others
// can write or that belongs to another user.
func ensureBase(base string) error {
	if err := os.MkdirAll(base, 0o700); err != nil {
		return fmt.Errorf("create run directory %s: %w", base, err)
	}
	st, err := os.Lstat(base)
	if err != nil {
		return fmt.Errorf("run directory %s: %w", base, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("run directory %s is not a directory", base)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return fmt.Errorf("run directory %s belongs to uid %d, not to you: remove it or set CONFGUEST_RUN_DIR", base, sys.Uid)
	}
	if st.Mode().Perm() != 0o700 {
		if err := os.Chmod(base, 0o700); err != nil {
			return fmt.Errorf("run directory %s: %w", base, err)
		}
	}
	return nil
}

// createRunDir creates base/name (mode 0700). A leftover directory of that name is removed
// first if its guest is gone (stale state of a crashed launcher); a live one is an error.
func createRunDir(base, name string) (string, error) {
	if err := ensureBase(base); err != nil {
		return "", err
	}
	dir := filepath.Join(base, name)
	if _, err := os.Lstat(dir); err == nil {
		if st, err := ReadState(dir); err == nil && st.alive() {
			return "", fmt.Errorf("guest %q is already running (pids %v): %w", name, st.PIDs, ErrExists)
		}
		if err := cleanStale(dir); err != nil {
			return "", err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("create run directory: %w", err)
	}
	return dir, nil
}

// ReadState reads the state file of the guest whose run directory is dir.
func ReadState(dir string) (State, error) {
	var st State
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %w", filepath.Join(dir, stateFile), err)
	}
	return st, nil
}

func writeState(dir string, st State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, stateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dir, stateFile))
}

// alive reports whether the guest's VMM still runs. A pid is only counted if the process
// still refers to this guest's run directory, so a recycled pid does not keep stale state.
func (st State) alive() bool {
	if st.VMMPID != 0 {
		return pidBelongs(st.VMMPID, filepath.Dir(st.Vsock))
	}
	for _, pid := range st.PIDs {
		if pidBelongs(pid, filepath.Dir(st.Vsock)) {
			return true
		}
	}
	return false
}

// pidBelongs reports whether pid is a live process whose command line mentions runDir.
func pidBelongs(pid int, runDir string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// A zombie (state Z) is dead for our purposes.
		if i := strings.LastIndexByte(string(st), ')'); i > 0 && len(st) > i+2 && st[i+2] == 'Z' {
			return false
		}
	}
	return strings.Contains(string(b), runDir)
}

// cleanStale kills whatever is left of a guest's processes and removes its run directory.
func cleanStale(dir string) error {
	if st, err := ReadState(dir); err == nil {
		killPIDs(st.PIDs, dir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove stale run directory %s: %w", dir, err)
	}
	return nil
}

// killPIDs SIGKILLs the processes of pids that still belong to runDir and waits briefly.
func killPIDs(pids []int, runDir string) {
	for _, pid := range pids {
		if pidBelongs(pid, runDir) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for _, pid := range pids {
		for pidBelongs(pid, runDir) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// Listed is one entry of List: a guest's state as its run directory records it.
type Listed struct {
	State
	Dir   string
	Alive bool
}

// List returns the guests under base. Stale ones (VMM gone) are cleaned up and not listed
// unless keepStale is set.
func List(base string, keepStale bool) ([]Listed, error) {
	ents, err := os.ReadDir(base)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", base, err)
	}
	var out []Listed
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(base, e.Name())
		st, err := ReadState(dir)
		if err != nil {
			// A directory without state is an ephemeral run or a launcher that died before
			// writing it; only the launcher pid in its name could tell, so age decides.
			if info, ierr := e.Info(); ierr == nil && time.Since(info.ModTime()) > time.Hour && !keepStale {
				os.RemoveAll(dir)
			}
			continue
		}
		g := Listed{State: st, Dir: dir, Alive: st.alive()}
		if !g.Alive && !keepStale {
			cleanStale(dir)
			continue
		}
		out = append(out, g)
	}
	return out, nil
}
