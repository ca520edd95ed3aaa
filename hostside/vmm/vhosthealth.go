package vmm

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
)

// vhost-device-vsock (0.3.0, on vhost-user-backend 0.20) serves the vsock device from one
// thread, which vhost-user-backend names vhostWorkerThread. When the backend's event
// handler returns an error, that thread returns it and ends, and nothing is logged; the
// process lives on, its listening socket still accepts connections and takes CONNECT
// lines, and none is ever answered. CONNECTs sent while the guest's vsock driver is still
// setting up its queues ended it so once in four runs of a client dialing every 50 ms
// from QEMU's start. The guest itself is fine; only a new backend, that is a new boot, helps.
const vhostWorkerThread = "vring_worker"

// vhostWatch remembers whether the vsock backend's worker thread was ever seen, so that a
// backend whose threads are named otherwise is never taken for a stalled one.
type vhostWatch struct {
	pid         int
	sawWorker   atomic.Bool
	threadNames func(pid int) ([]string, error) // taskNames; tests inject their own
}

// stalled reports why the backend's vsock device no longer runs, or nil while it does
// (or while that cannot be told).
func (w *vhostWatch) stalled() error {
	if w == nil || w.pid == 0 {
		return nil
	}
	names, err := w.threadNames(w.pid)
	if err != nil {
		return nil // the process is gone: Done and Wait report that
	}
	for _, n := range names {
		if n == vhostWorkerThread {
			w.sawWorker.Store(true)
			return nil
		}
	}
	if !w.sawWorker.Load() {
		return nil
	}
	return fmt.Errorf("vhost-device-vsock (pid %d) runs without its %s thread: %w", w.pid, vhostWorkerThread, ErrVsockStalled)
}

// taskNames lists the names of the threads of process pid.
func taskNames(pid int) ([]string, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "comm"))
		if err != nil {
			continue // the thread ended meanwhile
		}
		names = append(names, strings.TrimSpace(string(b)))
	}
	return names, nil
}

// VsockStalled reports, with ErrVsockStalled, a VM whose hybrid vsock backend lives but no
// longer serves the guest's vsock device; nil when it does or when that cannot be told.
// Call it when CONNECTs go unanswered.
func VsockStalled(vm VM) error {
	if p, ok := vm.(*procVM); ok {
		if err := p.vhost.stalled(); err != nil {
			return fmt.Errorf("%w%s", err, logTail(filepath.Join(p.runDir, vhostLog)))
		}
	}
	return nil
}
