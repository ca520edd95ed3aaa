// Command podbench measures pod start (CRI RunPodSandbox to the first container's first
// output line) for busybox and for a large image, first and second time, under the
// confguest runtime handler and under runc in one run, and the host memory of idle pods.
// `make bench` runs it; see build/bench/README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"confguest/build/podbench"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "podbench:", err)
		os.Exit(1)
	}
}

func run() error {
	var o podbench.Options
	o.Host.Flags(flag.CommandLine, "cgbench0", "10.88.74.0/24")
	flag.StringVar(&o.OutDir, "out", "out/podbench", "folder for containerd's log and the pods' logs")
	flag.IntVar(&o.Runs, "runs", 3, "starts of each kind (image, first or second, runtime); the figures are medians")
	flag.IntVar(&o.BigMiB, "big-mib", 200, "MiB of incompressible files the large image adds to busybox")
	flag.IntVar(&o.IdlePods, "idle-pods", 2, "idle pods of each runtime whose host memory is measured at once (0: none)")
	flag.Parse()
	if flag.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if err := o.Host.Resolve(); err != nil {
		return err
	}
	var err error
	if o.OutDir, err = filepath.Abs(o.OutDir); err != nil {
		return err
	}
	o.Log, o.Out = os.Stderr, os.Stdout
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return podbench.Run(ctx, o)
}
