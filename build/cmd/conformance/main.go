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
	o.Host.Flags(flag.CommandLine, "cgconform0", "10.88.77.0/24")
	flag.StringVar(&o.Handler, "runtime", "confguest", "CRI runtime handler to test: confguest or runc")
	flag.StringVar(&o.Focus, "focus", "", "run only the specs whose names match this regular expression")
	flag.StringVar(&o.OutDir, "out", "out/conformance", "folder for critest's log and report and containerd's log")
	strict := flag.Bool("strict", false, "exit 1 when a spec fails (for CI; a full run prints its counts and exits 0)")
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
