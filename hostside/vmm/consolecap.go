package vmm

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// The guest's serial console log grows with every container the guest runs (a few hundred
// bytes of agent log lines each) for as long as the guest lives. The VMM writes it through
// its own file descriptor at its own offset, so the file cannot be rotated or truncated
// under it; instead TrimConsole frees all but its tail: the bytes before the last
// ConsoleKeep are punched out (fallocate PUNCH_HOLE), which returns their storage and reads
// back as NUL bytes. The file's size still counts everything ever written; its allocated
// size stays near ConsoleKeep. Readers of the tail (ConsoleTail, error messages) are
// unaffected.
const (
	// ConsoleKeep is how much of the console log's end is kept.
	ConsoleKeep = 256 << 10
	// consoleTrimEvery is how often a running VM's console log is trimmed: between two
	// trims it holds at most ConsoleKeep plus what the guest printed in this interval.
	consoleTrimEvery = 10 * time.Second
)

// TrimConsole frees the console log at path except its last keep bytes (rounded out to
// whole 4 KiB blocks). It does nothing to a file no larger than keep, or when the file
// system cannot punch holes (the log then grows as before).
func TrimConsole(path string, keep int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("trim the console log: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("trim the console log: %w", err)
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
		return fmt.Errorf("trim the console log %s: %w", path, err)
	}
	return nil
}

// trimConsoleUntil trims the console log at path every interval until done is closed.
func trimConsoleUntil(done <-chan struct{}, path string, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			TrimConsole(path, ConsoleKeep)
		}
	}
}
