package supervise

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// These tests run real child processes (sh) as the "agent". They never set
// KillAll, which would signal every process of the machine.

func shell(t *testing.T, script string) Config {
	t.Helper()
	sh, err := lookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	return Config{Path: sh, Args: []string{"sh", "-c", script}, Log: slog.New(slog.DiscardHandler), StopTimeout: 300 * time.Millisecond}
}

func lookPath(name string) (string, error) {
	for _, dir := range []string{"/bin", "/usr/bin"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}

func runWithin(t *testing.T, d time.Duration, cfg Config) error {
	t.Helper()
	// Keep a SIGUSR2 sent by a test from killing the test binary should it
	// arrive before Run has subscribed to it.
	guard := make(chan os.Signal, 1)
	signal.Notify(guard, unix.SIGUSR2)
	defer signal.Stop(guard)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return Run(ctx, cfg)
}

// shutdownWhenReady sends the test process SIGUSR2 (a shutdown request)
// once the agent's script has created ready, that is once its traps are
// set, and then waits delay more; a loaded machine can take longer than
// any fixed sleep to start the shell.
func shutdownWhenReady(ready string, delay time.Duration) {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
	}
	time.Sleep(delay)
	unix.Kill(os.Getpid(), unix.SIGUSR2)
}

func TestAgentExitIsAnError(t *testing.T) {
	tests := []struct {
		name, script, want string
	}{
		{"exit status", "exit 3", "agent: exited with status 3"},
		{"signal", "kill -SEGV $$", "agent: killed by signal SIGSEGV"},
		{"clean exit is still fatal", "exit 0", "agent: exited with status 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := runWithin(t, 10*time.Second, shell(t, tc.script))
			var ee *ExitError
			if err == nil || !errors.As(err, &ee) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run(sh -c %q) = %v, want ExitError %q", tc.script, err, tc.want)
			}
		})
	}
}

func TestDiagnoseIsAppended(t *testing.T) {
	cfg := shell(t, "exit 1")
	why := errors.New("dm-verity detected corrupted data")
	cfg.Diagnose = func() error { return why }
	err := runWithin(t, 10*time.Second, cfg)
	if !errors.Is(err, why) || err.Error() != "agent: exited with status 1: dm-verity detected corrupted data" {
		t.Errorf("Run = %q, want the exit then the diagnosis", err)
	}
}

func TestStartFailure(t *testing.T) {
	cfg := Config{Path: "/nonexistent/agent", Args: []string{"agent"}, Log: slog.New(slog.DiscardHandler)}
	err := runWithin(t, 10*time.Second, cfg)
	if !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "start agent: ") {
		t.Errorf("Run(missing agent) = %v, want start agent: ... not exist", err)
	}
}

func TestShutdownSignalStopsAgent(t *testing.T) {
	dir := t.TempDir()
	marker, ready := filepath.Join(dir, "stopped"), filepath.Join(dir, "ready")
	cfg := shell(t, "trap 'echo > "+marker+"; exit 0' TERM; echo > "+ready+"; while :; do sleep 0.05; done")
	go shutdownWhenReady(ready, 0)
	if err := runWithin(t, 10*time.Second, cfg); err != nil {
		t.Fatalf("Run with SIGUSR2 = %v, want nil (shutdown requested)", err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("agent did not get SIGTERM (no %s): %v", marker, err)
	}
}

func TestStubbornAgentIsKilled(t *testing.T) {
	// The shell ignores SIGTERM, and so does sleep, which inherits that.
	ready := filepath.Join(t.TempDir(), "ready")
	cfg := shell(t, "trap '' TERM; echo > "+ready+"; exec sleep 30")
	go shutdownWhenReady(ready, 200*time.Millisecond)
	start := time.Now()
	if err := runWithin(t, 20*time.Second, cfg); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond+cfg.StopTimeout || d > 10*time.Second {
		t.Errorf("Run returned after %v, want after the %v stop timeout and well before sleep 30 ends", d, cfg.StopTimeout)
	}
}

func TestPowerButtonRequestsShutdown(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "event0")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := shell(t, "exec sleep 30")
	cfg.PowerButtons = []string{fifo}
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		defer f.Close()
		f.Write(event(evKey, 30, 1))       // another key: ignored
		f.Write(event(evKey, keyPower, 0)) // a release: ignored
		time.Sleep(200 * time.Millisecond)
		f.Write(event(evKey, keyPower, 1))
	}()
	start := time.Now()
	if err := runWithin(t, 20*time.Second, cfg); err != nil {
		t.Fatalf("Run with a KEY_POWER press = %v, want nil", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("Run returned after %v, before the power key was pressed", d)
	}
}

func TestReapsOrphans(t *testing.T) {
	// The agent leaves background children; they must be reaped, not left
	// as zombies, and their exit must not be taken for the agent's.
	cfg := shell(t, "(sleep 0.1 &) ; sleep 0.1 & sleep 0.5; exit 7")
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skipf("cannot become a subreaper: %v", err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	err := runWithin(t, 10*time.Second, cfg)
	if err == nil || !strings.Contains(err.Error(), "exited with status 7") {
		t.Fatalf("Run = %v, want the agent's own status 7", err)
	}
	var ws unix.WaitStatus
	if p, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil); !errors.Is(err, unix.ECHILD) {
		t.Errorf("after Run, wait4 = %d, %v; want ECHILD (every child reaped)", p, err)
	}
}
