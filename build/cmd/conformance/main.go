// Command conformance runs critest (Kubernetes' CRI validation suite) against a private
// containerd with the confguest runtime handler (or runc, for comparison) and prints how
// many specs passed, failed and were skipped. `make conformance` runs it; see
// build/conformance.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"confguest/build/conformance"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		os.Exit(1)
	}
}

func run() error {
	var o conformance.Options
	flag.StringVar(&o.ImageDir, "image", "out", "the guest image (make image)")
	flag.StringVar(&o.Shim, "shim", "bin/containerd-shim-confguest-v2", "the containerd shim (make build)")
	flag.StringVar(&o.Handler, "runtime", "confguest", "CRI runtime handler to test: confguest or runc")
	flag.StringVar(&o.Focus, "focus", "", "run only the specs whose names match this regular expression")
	flag.StringVar(&o.OutDir, "out", "out/conformance", "folder for critest's log and report and containerd's log")
	flag.StringVar(&o.Bridge, "bridge", "cgconform0", "name of the CNI bridge created for the pods")
	flag.StringVar(&o.Subnet, "subnet", "10.88.77.0/24", "pod subnet on that bridge")
	flag.StringVar(&o.Accel, "accel", "auto", "QEMU accelerator of the pods' VMs: auto, tcg or kvm")
	strict := flag.Bool("strict", false, "exit 1 when a spec fails (for CI; a full run prints its counts and exits 0)")
	flag.Parse()
	if flag.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	repo, err := os.Getwd()
	if err != nil {
		return err
	}
	o.Repo = repo
	for _, p := range []*string{&o.ImageDir, &o.Shim, &o.OutDir} {
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
	}
	o.Log = os.Stdout
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := conformance.Run(ctx, o)
	if err != nil {
		return err
	}
	sum.Print(os.Stdout, o.Handler)
	if *strict && sum.Failed > 0 {
		return fmt.Errorf("%d of %d specs failed", sum.Failed, sum.Ran())
	}
	return nil
}
