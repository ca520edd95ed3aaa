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
