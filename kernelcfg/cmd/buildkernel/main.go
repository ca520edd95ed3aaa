// Command buildkernel builds the guest kernel from the pinned Debian kernel source and
// kernelcfg/guest.config, reproducibly and cached outside the repository:
//
//	go run ./kernelcfg/cmd/buildkernel -o out/bzImage -info out/kernel.json
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"confguest/kernelcfg"
	"confguest/kernelcfg/kbuild"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "buildkernel:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("buildkernel", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "write the bzImage to this `file`")
	info := fs.String("info", "", "write the build description (JSON) to this `file`")
	cache := fs.String("cache", defaultCache(), "kernel build cache `dir`")
	fragment := fs.String("fragment", "", "config fragment `file` (default: the embedded kernelcfg/guest.config)")
	source := fs.String("source", "", "unpacked "+kernelcfg.SourcePackage+" package `dir` (default: fetched with -debpin)")
	debpin := fs.String("debpin", "build/debpin.sh", "pinned Debian package fetcher `script`")
	jobs := fs.Int("j", 2, "parallel compile `jobs`")
	configOnly := fs.Bool("config-only", false, "stop after merging and checking the config; print its path")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: all inputs are flags (see -h)", fs.Args())
	}
	if *out == "" && *info == "" && !*configOnly {
		return fmt.Errorf("nothing to write: pass -o FILE and/or -info FILE")
	}

	frag, fragName := kernelcfg.Fragment, "kernelcfg/guest.config"
	if *fragment != "" {
		b, err := os.ReadFile(*fragment)
		if err != nil {
			return fmt.Errorf("reading fragment: %w", err)
		}
		frag, fragName = b, *fragment
	}

	var src kbuild.Source
	var err error
	if *source != "" {
		src, err = kbuild.ReadSource(*source)
	} else {
		src, err = kbuild.FetchSource(ctx, *debpin, kernelcfg.SourcePackage)
	}
	if err != nil {
		return err
	}

	res, err := kbuild.Build(ctx, kbuild.Config{
		Source:       src,
		Fragment:     frag,
		FragmentName: fragName,
		CacheDir:     *cache,
		Jobs:         *jobs,
		Progress:     stdout,
		ConfigOnly:   *configOnly,
	})
	if err != nil {
		return err
	}
	if *configOnly {
		fmt.Fprintf(stdout, "kernel: final config %s\n", res.Config)
		return nil
	}
	if err := kbuild.WriteOutputs(res, *out, *info); err != nil {
		return err
	}
	if *out != "" {
		fmt.Fprintf(stdout, "kernel: wrote %s (%d bytes)\n", *out, res.Info.BzImageSize)
	}
	return nil
}

// defaultCache is ${CONFGUEST_CACHE:-$HOME/.cache/confguest}/kernel.
func defaultCache() string {
	root := os.Getenv("CONFGUEST_CACHE")
	if root == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		root = filepath.Join(home, ".cache", "confguest")
	}
	return filepath.Join(root, "kernel")
}
