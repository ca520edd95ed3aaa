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

	"confguest/build/toolpin"
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
	lockFile := fs.String("toolchain", "build/toolchain.lock", "pinned build tools `file`: the build refuses any other version")
	final := fs.String("final", "", "expected final .config `file` (default: the embedded kernelcfg/final.config, unless -fragment is given)")
	writeFinal := fs.String("write-final", "", "with -config-only: write the final .config to this `file` instead of comparing it")
	keep := fs.Bool("keep-build", false, "keep the build tree in the cache entry (for comparing two builds)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: all inputs are flags (see -h)", fs.Args())
	}
	if *out == "" && *info == "" && !*configOnly {
		return fmt.Errorf("nothing to write: pass -o FILE and/or -info FILE")
	}
	if *writeFinal != "" && !*configOnly {
		return fmt.Errorf("-write-final needs -config-only")
	}

	frag, fragName := kernelcfg.Fragment, "kernelcfg/guest.config"
	if *fragment != "" {
		b, err := os.ReadFile(*fragment)
		if err != nil {
			return fmt.Errorf("reading fragment: %w", err)
		}
		frag, fragName = b, *fragment
	}

	finalCfg, finalName := kernelcfg.FinalConfig, "kernelcfg/final.config"
	switch {
	case *writeFinal != "":
		finalCfg = nil
	case *final != "":
		b, err := os.ReadFile(*final)
		if err != nil {
			return fmt.Errorf("reading the expected final config: %w", err)
		}
		finalCfg, finalName = b, *final
	case *fragment != "":
		finalCfg = nil // kernelcfg/final.config is the answer for kernelcfg/guest.config only
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

	// The tools are checked before anything is built or taken from the cache.
	lock, err := toolpin.Read(*lockFile)
	if err != nil {
		return fmt.Errorf("%w (run from the repository root, or pass -toolchain FILE)", err)
	}
	pins := lock.For(toolpin.Kernel)
	if err := toolpin.Check(ctx, lock.Path, pins, toolpin.System(kbuild.BuildPATH)); err != nil {
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
		KeepTree:     *keep,

		FinalConfig:     finalCfg,
		FinalConfigName: finalName,
		Toolchain:       toolpin.Lines(pins),
	})
	if err != nil {
		return err
	}
	if *configOnly {
		fmt.Fprintf(stdout, "kernel: final config %s\n", res.Config)
		if *writeFinal != "" {
			b, err := os.ReadFile(res.Config)
			if err != nil {
				return fmt.Errorf("reading the final config: %w", err)
			}
			if err := os.WriteFile(*writeFinal, b, 0o644); err != nil {
				return fmt.Errorf("writing the final config: %w", err)
			}
			fmt.Fprintf(stdout, "kernel: wrote %s\n", *writeFinal)
		}
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
