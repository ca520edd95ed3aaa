// Command init is confguest's PID 1, /init in the initramfs. It mounts the
// kernel filesystems, reads the confguest.* kernel parameters (see package
// confguest/init/cmdline), mounts the dm-verity protected root, switches into
// it and supervises /sbin/agent. It never returns: on a requested shutdown it
// stops the agent and powers off; on any failure it prints one line
//
//	confguest-init: fatal: <step>: <reason>
//
// and powers off. There is no shell and no recovery path.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"confguest/init/boot"
	"confguest/init/cmdline"
	"confguest/init/power"
	"confguest/init/supervise"
)

// AgentPath is the agent on the verity root.
const AgentPath = "/sbin/agent"

// AgentEnv is the agent's environment. GODEBUG=asyncpreemptoff=1 turns off
// the Go runtime's asynchronous preemption in the agent. With it on, sysmon
// interrupts the agent's start (package initialisation runs for hundreds of
// milliseconds under TCG) at random instructions, and each interrupt looks
// up the interrupted function's table entry, pc-value tables and name in
// .gopclntab: pages of the binary that differ from boot to boot, each read
// and hashed through dm-verity before the agent is ready. Off, the agent
// touched 4,268-4,332 KiB of its binary before ready in four boots, on
// 4,432-4,580 KiB in eight boots of the same agent with it on
// (build/bench/README.md): about 220 KiB less, nearly all of .gopclntab's
// function table, pc-value tables and function names. The cost: a
// goroutine in a loop without function calls can no longer be preempted,
// so a garbage collection would wait for such a loop to end. The agent has
// none that runs long (it is I/O bound, and built without inlining, so its
// loops call functions, where goroutines are preempted as before). Processes
// the agent starts do not inherit it: libcontainer gives a container's
// processes only its own variables and the spec's.
var AgentEnv = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/", "GODEBUG=asyncpreemptoff=1"}

// AgentArgs is the agent's command line. It is part of the measured
// initramfs, so the host cannot change it: the agent always requires a
// policy (the first call must be SetPolicy, bound to HOST_DATA under
// confguest.tee=snp, accepted unbound under the measured confguest.tee=none).
var AgentArgs = []string{AgentPath, "-require-policy"}

func main() {
	if os.Getpid() != 1 {
		// Not the guest's PID 1: refuse before touching mounts or power.
		fmt.Fprintln(os.Stderr, "confguest-init: must run as PID 1 (the guest's /init); refusing to run here")
		os.Exit(2)
	}
	if err := run(context.Background(), os.Args, os.Stdout); err != nil {
		fmt.Fprintf(os.Stdout, "confguest-init: fatal: %s\n", boot.OneLine(err.Error()))
	} else {
		fmt.Fprintln(os.Stdout, "confguest-init: powering off")
	}
	power.Off()
}

// run boots and supervises the agent. It returns nil when a shutdown was
// requested and an error (a *boot.StepError, or the agent's end) otherwise.
func run(ctx context.Context, _ []string, stdout io.Writer) error {
	level := new(slog.LevelVar)
	log := newLogger(stdout, level)
	var cfg cmdline.Config
	steps := boot.Steps(boot.Plan{
		CmdlinePath: "/proc/cmdline",
		Config:      &cfg,
		Level:       level,
		Printf:      func(format string, args ...any) { fmt.Fprintf(stdout, format, args...) },
	})
	if err := boot.Run(ctx, log, steps); err != nil {
		return err
	}
	buttons, _ := filepath.Glob("/dev/input/event*")
	return supervise.Run(ctx, supervise.Config{
		Path:         AgentPath,
		Args:         AgentArgs,
		Env:          AgentEnv,
		KillAll:      true,
		PowerButtons: buttons,
		Diagnose:     func() error { return boot.VerityCheck(boot.VerityName, &cfg) },
		Log:          log,
	})
}
