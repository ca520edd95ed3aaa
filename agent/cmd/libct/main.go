// Command libct is the agent's libcontainer helper (package agent/libct): the agent runs
// it as /sbin/libct once per container operation, and libcontainer re-executes it as
// "libct init" as the init of each new container and exec'd process.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"

	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // namespace setup before the Go runtime starts

	"golang.org/x/sys/unix"

	"confguest/agent/libct/ops"
)

func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		// Never returns: becomes the container process.
		libcontainer.Init()
	}
	// Keep the main goroutine, which runs the operation, on the main thread. libcontainer
	// starts a container's init with SIGKILL as its parent-death signal, which the kernel
	// sends when the forking thread ends, not the process; and libcontainer joins a
	// container's namespaces on locked threads that the runtime then discards. On the main
	// thread, which lives as long as the process, the init is not killed half-way.
	runtime.LockOSThread()
}

func main() {
	if len(os.Args) > 1 && testModes[os.Args[1]] != nil {
		ctx, stop := signal.NotifyContext(context.Background(), unix.SIGTERM, unix.SIGINT)
		defer stop()
		if err := testModes[os.Args[1]](ctx, os.Args[2:], os.Stdout, os.Stderr); err != nil {
			fmt.Fprintf(os.Stderr, "libct %s: %v\n", os.Args[1], err)
			os.Exit(1)
		}
		return
	}
	os.Exit(ops.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
