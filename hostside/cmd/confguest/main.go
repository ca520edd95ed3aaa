// Command confguest is the host-side tool of confguest: it boots the guest image under a
// VMM and runs containers in it, computes launch measurements, and verifies evidence.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"confguest/hostside/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	stop()
	if code != 0 {
		os.Exit(code)
	}
}
