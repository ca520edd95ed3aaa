package vmm

import (
	"errors"
	"os"
	"slices"
	"testing"
)

func TestVhostWatchStalled(t *testing.T) {
	gone := errors.New("no such process")
	for _, tc := range []struct {
		name  string
		polls [][]string // thread names at each poll; nil for a process that is gone
		want  []bool     // stalled at each poll
	}{
		{"worker runs", [][]string{{"vhost-device-vs", "vring_worker"}, {"vhost-device-vs", "vring_worker"}}, []bool{false, false}},
		{"worker ends", [][]string{{"vhost-device-vs", "vring_worker"}, {"vhost-device-vs", "vhu-vsock-cid-3"}}, []bool{false, true}},
		{"worker never seen (another backend)", [][]string{{"vhost-device-vs"}, {"vhost-device-vs"}}, []bool{false, false}},
		{"process gone", [][]string{{"vhost-device-vs", "vring_worker"}, nil}, []bool{false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i := 0
			w := &vhostWatch{pid: 42, threadNames: func(pid int) ([]string, error) {
				names := tc.polls[i]
				if names == nil {
					return nil, gone
				}
				return names, nil
			}}
			for i = range tc.polls {
				err := w.stalled()
				if got := errors.Is(err, ErrVsockStalled); got != tc.want[i] {
					t.Errorf("poll %d with threads %q: stalled() = %v, want stalled %v", i, tc.polls[i], err, tc.want[i])
				}
			}
		})
	}
}

func TestTaskNames(t *testing.T) {
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Skip("no /proc")
	}
	names, err := taskNames(os.Getpid())
	if err != nil || !slices.Contains(names, string(comm[:len(comm)-1])) {
		t.Errorf("taskNames(self) = %q, %v; want the process's own name %q among them", names, err, comm)
	}
	if _, err := taskNames(-1); err == nil {
		t.Errorf("taskNames(-1) = nil error, want one")
	}
}

// VsockStalled of a VM this package did not start cannot tell.
func TestVsockStalledOtherVM(t *testing.T) {
	if err := VsockStalled(nil); err != nil {
		t.Errorf("VsockStalled(nil) = %v, want nil", err)
	}
}
