//go:build benchdirect

// The bench-direct mode exists only in agent binaries built with
// -tags benchdirect (qemu-tests/agent_test.go builds one for
// BenchmarkAgentInGuest and puts it on the benchmark's container disk);
// the image's agent is built without the tag. It runs one container
// directly with libcontainer, the way runc would, N times, and prints the
// median of create+start+wait: the peer the agent's own create, start and
// wait of the same container are compared against, in the same guest.

package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func init() {
	testModes["bench-direct"] = benchDirect
}

// benchDirect: bench-direct -n N -spec SPEC.json -rootfs DIR -state DIR.
// Prints "direct-median-ns <ns>" and each run's time on stdout.
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
	times := make([]time.Duration, 0, *n)
	for i := 0; i < *n && ctx.Err() == nil; i++ {
		d, err := runDirect(&spec, *state, "lc"+strconv.Itoa(i))
		if err != nil {
			return fmt.Errorf("run %d: %w", i, err)
		}
		times = append(times, d)
		fmt.Fprintf(stdout, "run %d %d\n", i, d.Nanoseconds())
	}
	slices.Sort(times)
	fmt.Fprintf(stdout, "direct-median-ns %d\n", times[len(times)/2].Nanoseconds())
	return nil
}

// runDirect creates, runs and waits for the container (timed), then
// destroys it (untimed), draining stdout and stderr like the agent does.
func runDirect(spec *specs.Spec, state, id string) (time.Duration, error) {
	start := time.Now()
	spec.Linux.CgroupsPath = "/confguest-direct/" + id
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: id, Spec: spec})
	if err != nil {
		return 0, fmt.Errorf("convert spec: %w", err)
	}
	c, err := libcontainer.Create(filepath.Join(state), id, cfg)
	if err != nil {
		return 0, fmt.Errorf("create: %w", err)
	}
	defer c.Destroy()
	outR, outW, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("stdout pipe: %w", err)
	}
	defer outR.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		outW.Close()
		return 0, fmt.Errorf("stderr pipe: %w", err)
	}
	defer errR.Close()
	drained := make(chan struct{}, 2)
	for _, r := range []*os.File{outR, errR} {
		go func() { io.Copy(io.Discard, r); drained <- struct{}{} }()
	}
	p := spec.Process
	noNewPrivs := p.NoNewPrivileges
	lp := &libcontainer.Process{
		Args: p.Args, Env: p.Env, Cwd: p.Cwd, UID: int(p.User.UID), GID: int(p.User.GID),
		NoNewPrivileges: &noNewPrivs, Init: true, Stdout: outW, Stderr: errW,
	}
	if c := p.Capabilities; c != nil {
		lp.Capabilities = &configs.Capabilities{Bounding: c.Bounding, Effective: c.Effective, Permitted: c.Permitted,
			Inheritable: c.Inheritable, Ambient: c.Ambient}
	}
	err = c.Run(lp)
	outW.Close()
	errW.Close()
	if err != nil {
		return 0, fmt.Errorf("run: %w", err)
	}
	st, err := lp.Wait()
	if err != nil {
		return 0, fmt.Errorf("wait: %w", err)
	}
	<-drained
	<-drained
	d := time.Since(start)
	if !st.Success() {
		return 0, fmt.Errorf("container exited with %v", st)
	}
	return d, nil
}
