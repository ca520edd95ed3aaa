// Package libct runs libcontainer for the agent in processes of their own.
//
// The agent serves every host request and stays resident for the guest's lifetime; the
// code that builds and enters containers (libcontainer, its cgroup managers, libseccomp,
// the nsenter C code) is needed only while a container is created, started, signalled,
// updated or torn down. So it lives in a second executable, /sbin/libct, that the agent
// runs once per operation, the way containerd's shim runs runc: the agent's binary, the
// pages it reads through dm-verity before it is ready and the memory it keeps are those of
// an API server, and libcontainer's state lives in its state directory between runs.
//
// The agent decides everything the helper does (package container builds the spec after
// the policy checked it); the helper is never reachable from the host. One run reads a
// Request as JSON on its standard input and writes a Result as JSON on its standard
// output; the files a new process gets (stdio, the console socket) are passed to it as
// extra descriptors. A container's processes outlive the run that started them: the agent
// is a child subreaper, so they become its children when the helper exits, and the agent
// waits for them and signals them itself.
//
// This package is the protocol and the agent's side; package libct/ops is the helper's.
// It must not import libcontainer: the agent links it.
package libct

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"confguest/agent/childexit"
)

// DefaultPath is where the image installs the helper.
const DefaultPath = "/sbin/libct"

// Operations of the helper.
const (
	OpCreate    = "create"    // create the container and start its init, which waits for OpStart
	OpStart     = "start"     // let the init run its program
	OpExec      = "exec"      // start another process in the running container
	OpSignal    = "signal"    // signal the container's init (SIGKILL: all its processes without a PID namespace of its own)
	OpProcesses = "processes" // list the PIDs in the container's cgroup
	OpStats     = "stats"     // read the cgroup's statistics
	OpUpdate    = "update"    // change the cgroup's limits
	OpDestroy   = "destroy"   // remove the cgroup and libcontainer's state
)

// Request is one operation on one container.
type Request struct {
	Op   string `json:"op"`
	ID   string `json:"id"`
	Root string `json:"root"` // libcontainer's state directory

	// OpCreate: the complete spec (root path, cgroup path, namespace paths set by the agent).
	Spec *specs.Spec `json:"spec,omitempty"`
	// OpExec: the process.
	Process *specs.Process `json:"process,omitempty"`
	// OpCreate, OpExec: the terminal's size; 0 keeps the process's consoleSize.
	ConsoleWidth  uint16 `json:"console_width,omitempty"`
	ConsoleHeight uint16 `json:"console_height,omitempty"`
	// OpCreate, OpExec: the descriptors of the new process's stdio in the helper (3 and
	// up; 0 is none), or of the socket the TTY master is sent over (a terminal).
	Stdin         int `json:"stdin,omitempty"`
	Stdout        int `json:"stdout,omitempty"`
	Stderr        int `json:"stderr,omitempty"`
	ConsoleSocket int `json:"console_socket,omitempty"`

	// OpSignal.
	Signal int `json:"signal,omitempty"`
	// OpUpdate.
	Resources *Resources `json:"resources,omitempty"`
}

// Resources are the limits an update changes; a zero field keeps its value, -1 lifts the
// limit (package container checks the ranges before).
type Resources struct {
	MemoryLimit       int64  `json:"memory_limit,omitempty"`
	MemoryReservation int64  `json:"memory_reservation,omitempty"`
	MemorySwap        int64  `json:"memory_swap,omitempty"`
	CPUShares         uint64 `json:"cpu_shares,omitempty"`
	CPUQuota          int64  `json:"cpu_quota,omitempty"`
	CPUPeriod         uint64 `json:"cpu_period,omitempty"`
	CPUs              string `json:"cpus,omitempty"`
	Mems              string `json:"mems,omitempty"`
	PidsLimit         int64  `json:"pids_limit,omitempty"`
}

// Stats are a container's cgroup statistics (cgroup v2 and v1 alike, as libcontainer
// reads them).
type Stats struct {
	MemoryUsage      uint64 `json:"memory_usage"`
	MemoryLimit      uint64 `json:"memory_limit"`
	MemoryMaxUsage   uint64 `json:"memory_max_usage"`
	InactiveFile     uint64 `json:"inactive_file"`
	CPUUsage         uint64 `json:"cpu_usage"` // ns
	CPUUser          uint64 `json:"cpu_user"`
	CPUSystem        uint64 `json:"cpu_system"`
	ThrottledPeriods uint64 `json:"throttled_periods"`
	ThrottledTime    uint64 `json:"throttled_time"` // ns
	PidsCurrent      uint64 `json:"pids_current"`
	PidsLimit        uint64 `json:"pids_limit"`
}

// Kinds of failure a Result reports, which the agent maps to its errors.
const (
	KindInvalid    = "invalid"     // the spec or process cannot be run as given
	KindNotRunning = "not-running" // the container's init has exited
	KindRefused    = "refused"     // the kernel refused the limits of an update
)

// Result is what one run reports.
type Result struct {
	Pid   int    `json:"pid,omitempty"`   // OpCreate: the init; OpExec: the process
	Pids  []int  `json:"pids,omitempty"`  // OpProcesses
	Stats *Stats `json:"stats,omitempty"` // OpStats
	Error string `json:"error,omitempty"`
	Kind  string `json:"kind,omitempty"`
}

// Error is a failure the helper reported.
type Error struct {
	Op, Kind, Msg string
}

func (e *Error) Error() string { return e.Msg }

// IsKind reports whether err is a failure of the helper of that kind.
func IsKind(err error, kind string) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == kind
}

// Command runs the helper.
type Command struct {
	Path string   // "" is DefaultPath
	Args []string // before the operation's own (tests run their test binary as the helper)
	// Log gets what the helper wrote to its standard error (libcontainer's warnings) in a
	// run that sent a result: a run without one quotes it in its error instead. Nil: the
	// text is dropped.
	Log *slog.Logger
}

// maxDiagnostics bounds what of the helper's standard error an error quotes.
const maxDiagnostics = 4 << 10

// Run runs one operation. files are the extra descriptors, numbered from 3 in order, that
// the request's stdio fields name. It waits for the helper to exit: a container's process
// it started is then the caller's child (a subreaper's), with the PID the result names.
// It takes no context: a helper stopped half-way would leave a container half-made.
func (c Command) Run(req Request, files ...*os.File) (Result, error) {
	in, err := json.Marshal(req)
	if err != nil {
		return Result{}, fmt.Errorf("libct %s: encode request: %w", req.Op, err)
	}
	path := c.Path
	if path == "" {
		path = DefaultPath
	}
	var stdout, stderr bytes.Buffer
	cmd := &exec.Cmd{
		Path:       path,
		Args:       append(append([]string{path}, c.Args...), req.Op),
		Env:        []string{},
		Stdin:      bytes.NewReader(in),
		Stdout:     &stdout,
		Stderr:     &limitedBuffer{b: &stderr, n: maxDiagnostics},
		ExtraFiles: files,
		WaitDelay:  time.Second,
	}
	// The helper's run is waited for through its pidfd (agent/childexit): with a thread
	// blocked in waitid per run, the agent would start threads to serve other calls
	// meanwhile, and keep them.
	runErr := cmd.Start()
	if runErr == nil {
		childexit.Await(cmd.Process.Pid)
		runErr = cmd.Wait()
	}
	var res Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		diag := strings.TrimSpace(stderr.String())
		if runErr != nil {
			return Result{}, fmt.Errorf("libct %s of %s: %w: %s", req.Op, req.ID, runErr, diag)
		}
		return Result{}, fmt.Errorf("libct %s of %s: no result (%v): %s", req.Op, req.ID, err, diag)
	}
	if diag := strings.TrimSpace(stderr.String()); diag != "" && c.Log != nil {
		c.Log.Warn("libct: the helper's diagnostics", "op", req.Op, "id", req.ID, "stderr", diag)
	}
	if res.Error != "" {
		return res, &Error{Op: req.Op, Kind: res.Kind, Msg: res.Error}
	}
	if runErr != nil {
		return res, fmt.Errorf("libct %s of %s: %w", req.Op, req.ID, runErr)
	}
	return res, nil
}

// limitedBuffer keeps the first n bytes written to it and discards the rest.
type limitedBuffer struct {
	b *bytes.Buffer
	n int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// ReadFrom reads r to its end, keeping its first bytes as Write does. os/exec copies the
// helper's standard error with it: without it, through Write, each run allocated a 32 KiB
// copy buffer (io.Copy's), most of the agent's garbage per container cycle after the
// orphan reaper's.
func (l *limitedBuffer) ReadFrom(r io.Reader) (int64, error) {
	n, err := l.b.ReadFrom(io.LimitReader(r, int64(max(l.n-l.b.Len(), 0))))
	if err != nil {
		return n, err
	}
	rest, err := io.Copy(io.Discard, r)
	return n + rest, err
}

// Rlimits are the resource limits a process may name, by their OCI names.
var Rlimits = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}
