package vmm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// The guest's serial console log grows with every container the guest runs (a few hundred
// bytes of agent log lines each) for as long as the guest lives, and the vsock backend's
// log may grow with connections. The VMM and its helpers write them through their own file
// descriptors at their own offsets, so the files cannot be rotated or truncated under
// them; instead TrimLog frees all but a log's tail: the bytes before the last LogKeep are
// punched out (fallocate PUNCH_HOLE), which returns their storage and reads back as NUL
// bytes. The file's size still counts everything ever written; its allocated size stays
// near LogKeep. Readers of the tail (ConsoleTail, error messages) are unaffected.
const (
	// LogKeep is how much of a log's end is kept.
	LogKeep = 256 << 10
	// logTrimEvery is how often a running VM's logs are trimmed: between two trims a log
	// holds at most LogKeep plus what was written in this interval.
	logTrimEvery = 10 * time.Second
)

// TrimLog frees the log at path except its last keep bytes (rounded out to
// whole 4 KiB blocks). It does nothing to a file no larger than keep, or when the file
// system cannot punch holes (the log then grows as before).
func TrimLog(path string, keep int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("trim the log: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("trim the log: %w", err)
	}
	end := (st.Size() - keep) &^ (4<<10 - 1)
	if end <= 0 {
		return nil
	}
	err = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, end)
	if errors.Is(err, unix.EOPNOTSUPP) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("trim the log %s: %w", path, err)
	}
	return nil
}

// TrimLogs trims the logs of the VM whose run directory is runDir: the console log and
// the vsock backend's (best effort: a log that cannot be trimmed only grows).
func TrimLogs(runDir string) {
	for _, p := range logPaths(runDir) {
		TrimLog(p, LogKeep)
	}
}

func logPaths(runDir string) []string {
	return []string{filepath.Join(runDir, ConsoleLog), filepath.Join(runDir, vhostLog)}
}

// trimLogsUntil trims the logs of runDir every interval until done is closed.
func trimLogsUntil(done <-chan struct{}, interval time.Duration, runDir string) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			TrimLogs(runDir)
		}
	}
}
