//go:build benchdirect

// The bench-direct mode exists only in helper binaries built with
// -tags benchdirect (qemu-tests/agent_test.go builds one for
// BenchmarkAgentInGuest and puts it on the benchmark's container disk);
// the image's helper is built without the tag. It runs one container
// directly with libcontainer, the way runc would, N times, and prints the
// median of create+start+wait: the peer the agent's own create, start and
// wait of the same container are compared against, in the same guest.

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func init() {
	testModes["bench-direct"] = benchDirect
}

// benchDirect: bench-direct -n N -spec SPEC.json -rootfs DIR -state DIR.
// Prints each run's time on stdout ("run I TOTAL CREATE RUN WAIT", in ns:
// libcontainer.Create, Container.Run, Process.Wait and the end of its
// output), then "direct-median-ns <ns>" of the totals.
func benchDirect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench-direct", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 10, "runs")
	specPath := fs.String("spec", "", "OCI runtime spec (JSON) of the container")
	rootfs := fs.String("rootfs", "", "root filesystem directory of the container")
	state := fs.String("state", "/run/bench-direct", "libcontainer state directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	data, err := os.ReadFile(*specPath)
	if err != nil {
		return fmt.Errorf("read spec: %w", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return fmt.Errorf("parse spec %s: %w", *specPath, err)
	}
	spec.Root = &specs.Root{Path: *rootfs, Readonly: spec.Root != nil && spec.Root.Readonly}
	delegated, err := delegateCgroup()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "cgroup controllers delegated: %s\n", strings.Join(delegated, " "))
	times := make([]time.Duration, 0, *n)
	for i := 0; i < *n && ctx.Err() == nil; i++ {
		p, err := runDirect(&spec, *state, "lc"+strconv.Itoa(i), delegated)
		if err != nil {
			return fmt.Errorf("run %d: %w", i, err)
		}
		d := p.create + p.run + p.wait
		times = append(times, d)
		fmt.Fprintf(stdout, "run %d %d %d %d %d\n", i, d.Nanoseconds(), p.create.Nanoseconds(), p.run.Nanoseconds(), p.wait.Nanoseconds())
	}
	slices.Sort(times)
	fmt.Fprintf(stdout, "direct-median-ns %d\n", times[len(times)/2].Nanoseconds())
	return nil
}

// delegateCgroup makes this process's cgroup one that can hold the
// containers' cgroups, as a container runtime inside a container must: a
// cgroup v2 cgroup other than the root that enables controllers for its
// children may hold no process itself ("no internal processes"). So it
// moves every process of its cgroup (this one, in bench-direct's
// container) into a child "init" and then enables all of the cgroup's
// controllers in its cgroup.subtree_control, and returns them. In a
// private cgroup namespace the cgroup is "/" and /sys/fs/cgroup shows it.
func delegateCgroup() ([]string, error) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("find own cgroup: %w", err)
	}
	var own string
	for line := range strings.Lines(string(data)) {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
			own = p
		}
	}
	if own == "" {
		return nil, fmt.Errorf("find own cgroup: no cgroup v2 entry (0::) in /proc/self/cgroup: bench-direct needs the unified hierarchy")
	}
	dir := filepath.Join("/sys/fs/cgroup", own)
	leaf := filepath.Join(dir, "init")
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create cgroup %s: %w: bench-direct needs /sys/fs/cgroup mounted read-write", leaf, err)
	}
	procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, fmt.Errorf("list processes of cgroup %s: %w", dir, err)
	}
	for _, pid := range strings.Fields(string(procs)) {
		if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(pid), 0); err != nil && !errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("move process %s into cgroup %s: %w", pid, leaf, err)
		}
	}
	ctrls, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("read controllers of cgroup %s: %w", dir, err)
	}
	var enable []string
	for _, c := range strings.Fields(string(ctrls)) {
		enable = append(enable, "+"+c)
	}
	if len(enable) == 0 {
		return nil, nil
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(strings.Join(enable, " ")), 0); err != nil {
		return nil, fmt.Errorf("enable controllers %q in cgroup %s: %w", enable, dir, err)
	}
	return strings.Fields(string(ctrls)), nil
}

// phases are the timed steps of one direct run.
type phases struct {
	create, run, wait time.Duration
}

// runDirect creates, runs and waits for the container (timed), then
// destroys it (untimed), draining stdout and stderr like the agent does.
// Each container's cgroup must have the controllers want (checked after
// the timed part).
func runDirect(spec *specs.Spec, state, id string, want []string) (phases, error) {
	var p phases
	start := time.Now()
	spec.Linux.CgroupsPath = "/confguest-direct/" + id
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: id, Spec: spec})
	if err != nil {
		return p, fmt.Errorf("convert spec: %w", err)
	}
	c, err := libcontainer.Create(filepath.Join(state), id, cfg)
	if err != nil {
		return p, fmt.Errorf("create: %w", err)
	}
	defer c.Destroy()
	outR, outW, err := os.Pipe()
	if err != nil {
		return p, fmt.Errorf("stdout pipe: %w", err)
	}
	defer outR.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		outW.Close()
		return p, fmt.Errorf("stderr pipe: %w", err)
	}
	defer errR.Close()
	drained := make(chan struct{}, 2)
	for _, r := range []*os.File{outR, errR} {
		go func() { io.Copy(io.Discard, r); drained <- struct{}{} }()
	}
	sp := spec.Process
	noNewPrivs := sp.NoNewPrivileges
	lp := &libcontainer.Process{
		Args: sp.Args, Env: sp.Env, Cwd: sp.Cwd, UID: int(sp.User.UID), GID: int(sp.User.GID),
		NoNewPrivileges: &noNewPrivs, Init: true, Stdout: outW, Stderr: errW,
	}
	if c := sp.Capabilities; c != nil {
		lp.Capabilities = &configs.Capabilities{Bounding: c.Bounding, Effective: c.Effective, Permitted: c.Permitted,
			Inheritable: c.Inheritable, Ambient: c.Ambient}
	}
	p.create = time.Since(start)
	start = time.Now()
	err = c.Run(lp)
	outW.Close()
	errW.Close()
	if err != nil {
		return p, fmt.Errorf("run: %w", err)
	}
	p.run = time.Since(start)
	start = time.Now()
	st, err := lp.Wait()
	if err != nil {
		return p, fmt.Errorf("wait: %w", err)
	}
	<-drained
	<-drained
	p.wait = time.Since(start)
	if !st.Success() {
		return p, fmt.Errorf("container exited with %v", st)
	}
	cg := filepath.Join("/sys/fs/cgroup", spec.Linux.CgroupsPath)
	have, err := os.ReadFile(filepath.Join(cg, "cgroup.controllers"))
	if err != nil {
		return p, fmt.Errorf("read controllers of the container's cgroup: %w", err)
	}
	for _, c := range want {
		if !slices.Contains(strings.Fields(string(have)), c) {
			return p, fmt.Errorf("cgroup %s has controllers %q, not %s: libcontainer could not enable it", cg, strings.TrimSpace(string(have)), c)
		}
	}
	return p, nil
}
