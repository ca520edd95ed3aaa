// Package supervise runs the agent as PID 1's child, reaps every process
// that ends up parented to PID 1, and turns shutdown requests into an
// orderly stop.
//
// A shutdown is requested by any of:
//   - SIGTERM or SIGPWR sent to PID 1 (e.g. by the VMM's guest agent tooling),
//   - SIGINT (the kernel's Ctrl-Alt-Del notification),
//   - SIGUSR2 sent to PID 1 by the agent (kill(1, SIGUSR2)): the agent asks
//     for power-off, e.g. after the host's Shutdown call,
//   - a press of the ACPI power button (KEY_POWER on /dev/input/event*),
//     which QEMU's system_powerdown and Cloud Hypervisor's vm.power-button
//     deliver.
//
// On a request the agent gets SIGTERM, then SIGKILL after StopTimeout; then
// every other process gets SIGTERM and, after a grace period, SIGKILL. Run
// then returns nil and PID 1 syncs and powers off. If the agent exits on its
// own, Run returns an error: PID 1 treats that as fatal.
package supervise

import (
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sys/unix"
)

// Config describes the supervised program.
type Config struct {
	// Path and Args (Args[0] included) of the agent.
	Path string
	Args []string
	Env  []string
	// StopTimeout is how long the agent has to exit after SIGTERM before it
	// is killed; zero means 5s.
	StopTimeout time.Duration
	// KillAll sends SIGTERM/SIGKILL to every process (kill(-1)) on the way
	// down. Only PID 1 sets it.
	KillAll bool
	// PowerButtons are the evdev devices to watch for KEY_POWER; nil means
	// none (PID 1 passes the /dev/input/event* glob).
	PowerButtons []string
	// Diagnose explains an agent failure (e.g. a dm-verity error behind an
	// exec or page-in failure); its error, if any, is reported with it.
	Diagnose func() error
	Log      *slog.Logger
}

// ExitError says how the agent ended.
type ExitError struct {
	Status unix.WaitStatus
}

func (e *ExitError) Error() string { return describe(e.Status) }

// describe renders a wait status the way a person reads it.
func describe(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exited with status %d", ws.ExitStatus())
	case ws.Signaled():
		s := fmt.Sprintf("killed by signal %s", unix.SignalName(ws.Signal()))
		if ws.CoreDump() {
			s += " (core dumped)"
		}
		return s
	}
	return fmt.Sprintf("ended with wait status %#x", uint32(ws))
}
