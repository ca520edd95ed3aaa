package vmm

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// consoleLines writes n numbered console lines (about 40 bytes each) to w.
func consoleLines(t *testing.T, w *os.File, from, n int) {
	t.Helper()
	var b bytes.Buffer
	for i := from; i < from+n; i++ {
		fmt.Fprintf(&b, "level=INFO msg=\"container created\" n=%06d\r\n", i)
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
}

// allocated is the storage the file at path holds, in bytes.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

func TestTrimLog(t *testing.T) {
	dir := t.TempDir()
	probe, err := os.Create(filepath.Join(dir, "probe"))
	if err != nil {
		t.Fatal(err)
	}
	probe.Write(make([]byte, 8<<10))
	if err := unix.Fallocate(int(probe.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 4<<10); errors.Is(err, unix.EOPNOTSUPP) {
		t.Skipf("the file system of %s cannot punch holes", dir)
	}
	probe.Close()

	for _, tc := range []struct {
		name  string
		lines int
	}{
		{"smaller than the kept tail", 1000},
		{"a long-lived guest's log", 100000}, // ~4 MiB
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), ConsoleLog)
			// The VMM's descriptor: it writes on at its own offset after each trim.
			vmm, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			defer vmm.Close()
			consoleLines(t, vmm, 0, tc.lines)
			before, _ := os.ReadFile(path)
			tail := consoleTail(path, 20)

			if err := TrimLog(path, LogKeep); err != nil {
				t.Fatalf("TrimLog: %v", err)
			}
			after, _ := os.ReadFile(path)
			if len(after) != len(before) {
				t.Errorf("TrimLog changed the size from %d to %d", len(before), len(after))
			}
			kept := min(int64(len(before)), LogKeep)
			if !bytes.Equal(after[int64(len(after))-kept:], before[int64(len(before))-kept:]) {
				t.Errorf("TrimLog changed the last %d bytes", kept)
			}
			if got := consoleTail(path, 20); !slices.Equal(got, tail) {
				t.Errorf("consoleTail after TrimLog = %q, want %q", got, tail)
			}
			if a := allocated(t, path); a > LogKeep+16<<10 && len(before) > LogKeep {
				t.Errorf("TrimLog left %d bytes allocated of a %d-byte log, want at most %d", a, len(before), LogKeep+16<<10)
			}
			if len(before) > LogKeep && !bytes.Equal(after[:4096], make([]byte, 4096)) {
				t.Errorf("TrimLog kept the start of a %d-byte log", len(before))
			}

			consoleLines(t, vmm, tc.lines, 3)
			if got, want := consoleTail(path, 1), fmt.Sprintf("level=INFO msg=\"container created\" n=%06d", tc.lines+2); len(got) != 1 || got[0] != want {
				t.Errorf("consoleTail after the VMM wrote on = %q, want %q", got, want)
			}
		})
	}
}

func TestTrimLogsUntil(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ConsoleLog)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	consoleLines(t, f, 0, 100000)
	full := allocated(t, path)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() { trimLogsUntil(done, 10*time.Millisecond, dir); close(stopped) }()
	deadline := time.Now().Add(5 * time.Second)
	for allocated(t, path) == full && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	close(done)
	<-stopped
	if a := allocated(t, path); a == full {
		t.Errorf("trimLogsUntil left the %d-byte log at %d bytes allocated", full, a)
	}
}

// TestTrimLogMissing: no console log yet is nothing to trim.
func TestTrimLogMissing(t *testing.T) {
	if err := TrimLog(filepath.Join(t.TempDir(), "none"), LogKeep); err != nil {
		t.Errorf("TrimLog(missing file) = %v, want nil", err)
	}
}
