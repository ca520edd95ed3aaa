// Package ops is the helper's side of package libct: one run reads a libct.Request on
// standard input, carries it out with libcontainer and writes a libct.Result on standard
// output. /sbin/libct is this package and libcontainer's container init.
package ops

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/configs/validate"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	_ "github.com/opencontainers/cgroups/devices" // device cgroup rules

	"confguest/agent/libct"
)

// Main runs the operation args names (the one argument after the program's), reading the
// request from stdin and writing the result to stdout; libcontainer's own log goes to
// diag. It returns the exit code: 0 when a result was written, whatever it says.
func Main(args []string, stdin io.Reader, stdout, diag io.Writer) int {
	logrus.SetOutput(diag)
	logrus.SetLevel(logrus.WarnLevel)
	var req libct.Request
	res := libct.Result{}
	dec := json.NewDecoder(io.LimitReader(stdin, 16<<20))
	dec.DisallowUnknownFields()
	switch err := dec.Decode(&req); {
	case len(args) != 1:
		res.Error = fmt.Sprintf("want one operation as the argument, got %q", args)
	case err != nil:
		res.Error = fmt.Sprintf("decode the request: %v", err)
	case req.Op != args[0]:
		res.Error = fmt.Sprintf("the request is for %q, the argument says %q", req.Op, args[0])
	default:
		res = run(req)
	}
	if err := json.NewEncoder(stdout).Encode(res); err != nil {
		fmt.Fprintf(diag, "libct: write the result: %v\n", err)
		return 1
	}
	return 0
}

func run(req libct.Request) libct.Result {
	if req.Op == libct.OpCreate {
		pid, err := create(req)
		return result(libct.Result{Pid: pid}, err)
	}
	op, ok := onContainer[req.Op]
	if !ok {
		return libct.Result{Error: fmt.Sprintf("unknown operation %q", req.Op)}
	}
	c, err := libcontainer.Load(req.Root, req.ID)
	if err != nil {
		return result(libct.Result{}, fmt.Errorf("load container %s: %w", req.ID, err))
	}
	return op(c, req)
}

// onContainer are the operations on an existing container.
var onContainer = map[string]func(*libcontainer.Container, libct.Request) libct.Result{
	libct.OpStart: func(c *libcontainer.Container, _ libct.Request) libct.Result {
		return result(libct.Result{}, c.Exec())
	},
	libct.OpExec: func(c *libcontainer.Container, req libct.Request) libct.Result {
		pid, err := exec(c, req)
		return result(libct.Result{Pid: pid}, err)
	},
	libct.OpSignal: func(c *libcontainer.Container, req libct.Request) libct.Result {
		return result(libct.Result{}, c.Signal(sigOf(req.Signal)))
	},
	libct.OpProcesses: func(c *libcontainer.Container, _ libct.Request) libct.Result {
		pids, err := c.Processes()
		return result(libct.Result{Pids: pids}, err)
	},
	libct.OpStats: func(c *libcontainer.Container, _ libct.Request) libct.Result {
		st, err := stats(c)
		return result(libct.Result{Stats: st}, err)
	},
	libct.OpUpdate: func(c *libcontainer.Container, req libct.Request) libct.Result {
		return result(libct.Result{}, update(c, req.Resources))
	},
	libct.OpDestroy: func(c *libcontainer.Container, _ libct.Request) libct.Result {
		return result(libct.Result{}, c.Destroy())
	},
}

// invalidError marks a spec or process libcontainer refuses to run as given.
type invalidError struct{ error }

// refusedError marks limits the kernel refused.
type refusedError struct{ error }

func result(r libct.Result, err error) libct.Result {
	if err == nil {
		return r
	}
	r.Error = err.Error()
	var inv invalidError
	var ref refusedError
	switch {
	case errors.As(err, &inv):
		r.Kind = libct.KindInvalid
	case errors.Is(err, libcontainer.ErrNotRunning):
		r.Kind = libct.KindNotRunning
	case errors.As(err, &ref):
		r.Kind = libct.KindRefused
	}
	return r
}

// create creates the container and starts its init, which then waits for OpStart. A
// failure leaves no libcontainer state behind.
func create(req libct.Request) (int, error) {
	if req.Spec == nil || req.Spec.Process == nil {
		return 0, invalidError{errors.New("no spec or no process in it")}
	}
	config, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: req.ID, Spec: req.Spec})
	if err != nil {
		return 0, invalidError{err}
	}
	if err := validate.Validate(config); err != nil {
		return 0, invalidError{err}
	}
	c, err := libcontainer.Create(req.Root, req.ID, config)
	if err != nil {
		return 0, fmt.Errorf("create container %s: %w", req.ID, err)
	}
	p, err := newProcess(req.Spec.Process, true, req)
	if err == nil {
		err = c.Start(p)
	}
	if err != nil {
		_ = c.Signal(sigOf(9))
		if derr := c.Destroy(); derr != nil {
			err = errors.Join(err, derr)
		}
		return 0, fmt.Errorf("start init of container %s: %w", req.ID, err)
	}
	return p.Pid()
}

// exec starts another process in the running container c.
func exec(c *libcontainer.Container, req libct.Request) (int, error) {
	if req.Process == nil {
		return 0, invalidError{errors.New("no process")}
	}
	p, err := newProcess(req.Process, false, req)
	if err != nil {
		return 0, err
	}
	// An exec'd process never turns off the container's no_new_privileges, whatever its
	// request says (the policy refuses such a request too).
	if c.Config().NoNewPrivileges {
		keep := true
		p.NoNewPrivileges = &keep
	}
	if err := c.Run(p); err != nil {
		return 0, fmt.Errorf("exec in container %s: %w", req.ID, err)
	}
	return p.Pid()
}

// newProcess builds the libcontainer process for an OCI process, with the stdio the
// request names.
func newProcess(p *specs.Process, init bool, req libct.Request) (*libcontainer.Process, error) {
	lp := &libcontainer.Process{
		Args:             p.Args,
		Env:              p.Env,
		Cwd:              p.Cwd,
		UID:              int(p.User.UID),
		GID:              int(p.User.GID),
		NoNewPrivileges:  &p.NoNewPrivileges,
		Init:             init,
		AdditionalGroups: make([]int, 0, len(p.User.AdditionalGids)),
	}
	for _, g := range p.User.AdditionalGids {
		lp.AdditionalGroups = append(lp.AdditionalGroups, int(g))
	}
	// Never nil, for the init process and exec'd ones alike: an absent
	// process.capabilities means no capabilities. Given none, libcontainer
	// would leave the process the helper's own full set.
	lp.Capabilities = &configs.Capabilities{}
	if c := p.Capabilities; c != nil {
		lp.Capabilities = &configs.Capabilities{
			Bounding: c.Bounding, Effective: c.Effective, Permitted: c.Permitted,
			Inheritable: c.Inheritable, Ambient: c.Ambient,
		}
	}
	for _, r := range p.Rlimits {
		t, ok := libct.Rlimits[r.Type]
		if !ok {
			return nil, invalidError{fmt.Errorf("unknown rlimit %q", r.Type)}
		}
		lp.Rlimits = append(lp.Rlimits, configs.Rlimit{Type: t, Hard: r.Hard, Soft: r.Soft})
	}
	if p.ConsoleSize != nil {
		lp.ConsoleWidth, lp.ConsoleHeight = uint16(p.ConsoleSize.Width), uint16(p.ConsoleSize.Height)
	}
	if req.ConsoleWidth > 0 && req.ConsoleHeight > 0 {
		lp.ConsoleWidth, lp.ConsoleHeight = req.ConsoleWidth, req.ConsoleHeight
	}
	// A stream the request does not name stays a nil interface: the process gets
	// /dev/null for it.
	for _, s := range []struct {
		fd   int
		what string
		set  func(*os.File)
	}{
		{req.Stdin, "stdin", func(f *os.File) { lp.Stdin = f }},
		{req.Stdout, "stdout", func(f *os.File) { lp.Stdout = f }},
		{req.Stderr, "stderr", func(f *os.File) { lp.Stderr = f }},
		{req.ConsoleSocket, "console socket", func(f *os.File) { lp.ConsoleSocket = f }},
	} {
		if s.fd == 0 {
			continue
		}
		f, err := file(s.fd, s.what)
		if err != nil {
			return nil, err
		}
		s.set(f)
	}
	return lp, nil
}

// file is the descriptor fd the agent passed.
func file(fd int, what string) (*os.File, error) {
	if fd < 3 {
		return nil, fmt.Errorf("%s: descriptor %d is not one the agent passes (3 and up)", what, fd)
	}
	f := os.NewFile(uintptr(fd), what)
	if _, err := f.Stat(); err != nil {
		return nil, fmt.Errorf("%s: descriptor %d: %w", what, fd, err)
	}
	return f, nil
}

func stats(c *libcontainer.Container) (*libct.Stats, error) {
	st, err := c.Stats()
	if err != nil {
		return nil, err
	}
	cg := st.CgroupStats
	if cg == nil {
		return &libct.Stats{}, nil
	}
	mu, cu := cg.MemoryStats.Usage, cg.CpuStats
	return &libct.Stats{
		MemoryUsage: mu.Usage, MemoryLimit: mu.Limit, MemoryMaxUsage: mu.MaxUsage,
		InactiveFile: cg.MemoryStats.Stats["inactive_file"],
		CPUUsage:     cu.CpuUsage.TotalUsage, CPUUser: cu.CpuUsage.UsageInUsermode, CPUSystem: cu.CpuUsage.UsageInKernelmode,
		ThrottledPeriods: cu.ThrottlingData.ThrottledPeriods, ThrottledTime: cu.ThrottlingData.ThrottledTime,
		PidsCurrent: cg.PidsStats.Current, PidsLimit: cg.PidsStats.Limit,
	}, nil
}

// update changes the cgroup limits as runc update does; fields left zero keep their
// value. A memory limit without a swap value keeps swap equal to the limit when it was
// (no swap, as containerd creates it).
func update(c *libcontainer.Container, r *libct.Resources) error {
	if r == nil {
		return invalidError{errors.New("no resources")}
	}
	config := c.Config()
	cg := *config.Cgroups
	res := *cg.Resources
	cg.Resources, config.Cgroups = &res, &cg
	if l := r.MemoryLimit; l != 0 {
		if r.MemorySwap == 0 && res.MemorySwap == res.Memory && res.MemorySwap != 0 {
			res.MemorySwap = l
		}
		res.Memory = l
	}
	if v := r.MemoryReservation; v != 0 {
		res.MemoryReservation = v
	}
	if v := r.MemorySwap; v != 0 {
		res.MemorySwap = v
	}
	if v := r.CPUShares; v != 0 {
		res.CpuShares, res.CpuWeight = v, cgroups.ConvertCPUSharesToCgroupV2Value(v)
	}
	if v := r.CPUQuota; v != 0 {
		res.CpuQuota = v
	}
	if v := r.CPUPeriod; v != 0 {
		res.CpuPeriod = v
	}
	if v := r.CPUs; v != "" {
		res.CpusetCpus = v
	}
	if v := r.Mems; v != "" {
		res.CpusetMems = v
	}
	if v := r.PidsLimit; v != 0 {
		res.PidsLimit = &v
	}
	if err := c.Set(config); err != nil {
		if errors.Is(err, libcontainer.ErrNotRunning) {
			return err
		}
		return refusedError{err}
	}
	return nil
}

// sigOf is signal n (the agent checked it is 1-64).
func sigOf(n int) os.Signal { return unix.Signal(n) }
