package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"golang.org/x/sys/unix"
)

// Run starts the agent and supervises it until a shutdown is requested
// (nil) or the agent ends on its own (an error naming how). Either way the
// agent, and with KillAll every other process, is gone when Run returns.
// Run must be the only code in the process that waits for children.
func Run(ctx context.Context, cfg Config) error {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, unix.SIGCHLD, unix.SIGTERM, unix.SIGINT, unix.SIGPWR, unix.SIGUSR2)
	defer signal.Stop(sigs)
	if cfg.KillAll {
		// Ctrl-Alt-Del sends SIGINT to PID 1 instead of rebooting at once.
		_ = unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF)
	}

	presses := make(chan string, 1)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	for _, dev := range cfg.PowerButtons {
		go watchPowerButton(watchCtx, dev, presses)
	}

	proc, err := os.StartProcess(cfg.Path, cfg.Args, &os.ProcAttr{
		Env:   cfg.Env,
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		Sys:   &unix.SysProcAttr{Setsid: true},
	})
	if err != nil {
		return cfg.explain(fmt.Errorf("start agent: %w", err))
	}
	pid := proc.Pid
	cfg.Log.Info("agent started", "path", cfg.Path, "pid", pid)

	var reason string
	for reason == "" {
		select {
		case <-ctx.Done():
			reason = "context: " + ctx.Err().Error()
		case dev := <-presses:
			reason = "power button " + dev
		case s := <-sigs:
			if s == unix.SIGCHLD {
				if ws, done := reap(pid); done {
					stopWatch()
					cfg.cleanup(pid, false)
					return cfg.explain(fmt.Errorf("agent: %w", &ExitError{Status: ws}))
				}
				continue
			}
			reason = "signal " + unix.SignalName(s.(unix.Signal))
		}
	}
	cfg.Log.Info("shutdown requested", "reason", reason)
	stopWatch()
	cfg.cleanup(pid, true)
	return nil
}

// explain appends Diagnose's account of an agent failure.
func (cfg Config) explain(err error) error {
	if cfg.Diagnose == nil {
		return err
	}
	if d := cfg.Diagnose(); d != nil {
		return fmt.Errorf("%w: %w", err, d)
	}
	return err
}

// reap collects every exited child and reports whether pid was among them.
func reap(pid int) (unix.WaitStatus, bool) {
	var agent unix.WaitStatus
	found := false
	for {
		var ws unix.WaitStatus
		p, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || p <= 0 {
			return agent, found
		}
		if p == pid {
			agent, found = ws, true
		}
	}
}

// waitGone reaps until pid has been reaped (or, for pid -1, until no child
// is left) or d passes. It reports whether that happened.
func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		var ws unix.WaitStatus
		p, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		switch {
		case errors.Is(err, unix.ECHILD):
			return true
		case err == nil && p > 0:
			if p == pid {
				return true
			}
			continue
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// cleanup stops the agent (if running) and, with KillAll, everything else.
func (cfg Config) cleanup(pid int, agentRunning bool) {
	timeout := cfg.StopTimeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	if agentRunning {
		_ = unix.Kill(pid, unix.SIGTERM)
		if !waitGone(pid, timeout) {
			cfg.Log.Warn("agent did not stop; killing it", "timeout", timeout)
			_ = unix.Kill(pid, unix.SIGKILL)
			waitGone(pid, time.Second)
		}
	}
	if cfg.KillAll {
		if unix.Kill(-1, unix.SIGTERM) == nil && !waitGone(-1, time.Second) {
			_ = unix.Kill(-1, unix.SIGKILL)
			waitGone(-1, time.Second)
		}
	}
}

// watchPowerButton reads input events from dev and sends dev on presses
// when KEY_POWER is pressed. A device that cannot be read is ignored.
func watchPowerButton(ctx context.Context, dev string, presses chan<- string) {
	f, err := os.Open(dev)
	if err != nil {
		return
	}
	go func() { <-ctx.Done(); f.Close() }()
	ev := make([]byte, inputEventSize)
	for {
		if _, err := io.ReadFull(f, ev); err != nil {
			return
		}
		if isPowerPress(ev) {
			select {
			case presses <- dev:
			default:
			}
		}
	}
}
