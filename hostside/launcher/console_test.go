package launcher

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// waitForConsole sees the marker however the console's writes split it, and gives up when
// its context ends.
func TestWaitForConsole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	found := make(chan bool, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() { found <- waitForConsole(ctx, path, agentReadyMarker) }()
	// Boot noise larger than one read, then the marker in two writes.
	f.WriteString(strings.Repeat("kernel line\n", 10000) + "confguest-init: agent started\nconfguest-age")
	time.Sleep(200 * time.Millisecond)
	select {
	case <-found:
		t.Fatal("waitForConsole returned before the marker was complete")
	default:
	}
	f.WriteString("nt: ready\n")
	select {
	case ok := <-found:
		if !ok {
			t.Fatal("waitForConsole = false, want true once the marker is there")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waitForConsole did not see the marker split across two writes")
	}

	short, cancelShort := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancelShort()
	if waitForConsole(short, filepath.Join(t.TempDir(), "absent.log"), agentReadyMarker) {
		t.Error("waitForConsole on a console that never shows the marker = true, want false when the context ends")
	}
}

func TestPowerOffReason(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
		want  string
	}{
		{"requested shutdown", []string{"confguest-agent: shutdown requested", "confguest-init: powering off"}, ""},
		{"agent crash", []string{
			"panic: runtime error: index out of range [3] with length 3",
			"goroutine 7 [running]:",
			"confguest/agent/output.Drain(...)",
			"confguest-init: fatal: agent: exited with status 2",
			"reboot: Power down",
		}, "agent: exited with status 2 (panic: runtime error: index out of range [3] with length 3)"},
		{"boot step", []string{"confguest-init: fatal: verity: root hash mismatch"}, "verity: root hash mismatch"},
		{"last fatal line wins", []string{"confguest-init: fatal: first", "confguest-init: fatal: second"}, "second"},
		{"no console", nil, ""},
	} {
		if got := powerOffReason(tc.lines); got != tc.want {
			t.Errorf("%s: powerOffReason = %q, want %q", tc.name, got, tc.want)
		}
	}
}
