package childexit

import (
	"os/exec"
	"testing"
	"time"
)

// Await returns after the child exits, not before, and leaves it for Wait to reap.
func TestAwait(t *testing.T) {
	cmd := exec.Command("sleep", "0.3")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	Await(cmd.Process.Pid)
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("Await returned after %v, before the child's 300 ms were up", d)
	}
	if err := cmd.Wait(); err != nil || !cmd.ProcessState.Exited() || cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("Wait after Await = %v, %v; want the child's clean exit", err, cmd.ProcessState)
	}
}

// A pid with no process returns at once.
func TestAwaitNoProcess(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		Await(cmd.Process.Pid) // reaped by Run: no such process now
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Await waits for a pid that was reaped")
	}
}
