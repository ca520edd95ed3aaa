// Command agent is the confguest in-guest API server. PID 1 starts it as
// /sbin/agent after switch_root; it serves the agent API (ttrpc) on vsock
// port 1024 and runs containers with libcontainer through its helper,
// /sbin/libct (package agent/libct). When it exits, PID 1 powers the VM off.
//
// The same binary is the pod's namespace holder (container.HolderArg).
//
// The agent runs in the guest's root cgroup, which has no CPU limit for GOMAXPROCS to
// follow, and the guest's CPUs do not change under it: the runtime does not update
// GOMAXPROCS (its system monitor would read the CPU affinity and cgroup limits every second
// of an idle guest, and a goroutine would wait to apply them).
//
//go:debug updatemaxprocs=0
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"

	"golang.org/x/sys/unix"

	"confguest/agent/container"
	"confguest/agent/libct"
	_ "confguest/agent/mainstack"
	"confguest/agent/server"
)

func init() {
	if len(os.Args) > 1 && os.Args[1] == container.HolderArg {
		// Never returns: holds the namespaces of the guest's pod.
		container.RunHolder()
	}
}

// gcPercent is the agent's GC target: collect when the heap has grown by
// half its live size rather than Go's default of doubling it. The live heap
// is about 0.5 MiB and a container cycle leaves ~0.1 MiB of garbage; the lower
// target keeps the heap's high-water mark lower, and with it the runtime's
// GC metadata, which grows with that mark and is never returned to the OS.
// In the guest the agent's anonymous memory after 100 cycles grew by
// 1.26-1.36 MiB instead of 1.60 MiB (agent/README.md), for about three
// times as many collections of that small heap.
const gcPercent = 50

func main() {
	debug.SetGCPercent(gcPercent)
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGTERM, unix.SIGINT)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "confguest-agent: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", server.DefaultAddress, "address to serve on: vsock:PORT or unix:PATH")
	stateDir := fs.String("state", server.DefaultStateDir, "directory for container state (tmpfs)")
	imageDir := fs.String("image-dir", server.DefaultImageDir, "directory of built-in container images a rootfs.guest_directory may name")
	debug := fs.Bool("debug", false, "log at debug level")
	requirePolicy := fs.Bool("require-policy", false, "refuse every call until SetPolicy installs a policy bound to HOST_DATA (agent/policy/README.md)")
	layerLinger := fs.Duration("layer-linger", container.DefaultLayerLinger, "how long a container image stays open (dm-verity device and mount) after its last container is deleted")
	libctPath := fs.String("libct", libct.DefaultPath, "the libcontainer helper (agent/libct)")
	poweroff := fs.Bool("poweroff", true, "on Shutdown, ask PID 1 to power off (SIGUSR2 to PID 1) instead of exiting")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: the agent takes only flags (-h lists them)", fs.Args())
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	var requestPowerOff func() error
	if *poweroff {
		// PID 1 (init/supervise) powers off on SIGUSR2 and stops the
		// agent with SIGTERM on the way.
		requestPowerOff = func() error { return unix.Kill(1, unix.SIGUSR2) }
	}
	return server.Run(ctx, server.Config{
		RequestPowerOff: requestPowerOff,
		RequirePolicy:   *requirePolicy,
		Containers:      container.Config{ImageDirs: []string{*imageDir}, LayerLinger: *layerLinger, Libct: libct.Command{Path: *libctPath}},
		Address:         *listen,
		StateDir:        *stateDir,
		Logger:          log,
		Ready: func() {
			// What the start read, measured just before the ready line: writing the line
			// and what the host's first calls touch are not the start's. The mapped
			// pages, slower to read, come after it.
			s, err := measureStartup("/sys")
			io.WriteString(stdout, "confguest-agent: ready\n")
			if err == nil {
				err = s.readMapped()
			}
			if err == nil {
				fmt.Fprintln(stdout, s)
				fmt.Fprintln(stdout, s.pagesLine())
			} else {
				fmt.Fprintf(stdout, "confguest-agent: startup: not measured: %v\n", err)
			}
		},
	})
}
