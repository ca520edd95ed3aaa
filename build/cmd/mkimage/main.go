// Command mkimage assembles the confguest guest image (see package guestimage).
//
//	mkimage -out out -kernel out/build/bzImage -kernel-info out/build/kernel.json
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"confguest/build/guestimage"
	"confguest/build/toolpin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "mkimage: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, log io.Writer) error {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	out := fs.String("out", "out", "output directory")
	kernel := fs.String("kernel", "", "bzImage from kernelcfg/cmd/buildkernel")
	kernelInfo := fs.String("kernel-info", "", "kernel.json from kernelcfg/cmd/buildkernel")
	demo := fs.String("busybox-root", "", "also lay out the busybox demo container root filesystem in this directory")
	lockFile := fs.String("toolchain", "build/toolchain.lock", "pinned build tools: the build refuses any other version")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *kernel == "" || *kernelInfo == "" {
		return fmt.Errorf("-kernel and -kernel-info are required (make image passes them)")
	}
	src, err := os.Getwd()
	if err != nil {
		return err
	}
	lock, err := toolpin.Read(*lockFile)
	if err != nil {
		return err
	}
	if _, err := guestimage.Build(ctx, guestimage.Config{
		SrcDir: src, OutDir: *out,
		Kernel: *kernel, KernelInfo: *kernelInfo, Log: log,
		Toolchain: lock, Machine: toolpin.System(""),
	}); err != nil {
		return err
	}
	if *demo != "" {
		fmt.Fprintf(log, "==> busybox container root in %s\n", *demo)
		return guestimage.BusyboxRoot(ctx, guestimage.BusyboxBinary, *demo)
	}
	return nil
}
