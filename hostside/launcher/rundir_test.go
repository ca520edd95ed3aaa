package launcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startHolder starts a process whose command line mentions dir, as a VMM's does.
func startHolder(t *testing.T, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", "sleep 30; : "+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Until the child has exec'd sh, its command line is the test binary's and does not
	// mention dir: wait, or a loaded machine makes the process look like someone else's.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", cmd.Process.Pid))
		if strings.Contains(string(b), dir) {
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("holder %d did not exec sh within 10s (cmdline %q)", cmd.Process.Pid, b)
		}
	}
}

func TestCreateRunDir(t *testing.T) {
	base := filepath.Join(t.TempDir(), "run")
	dir, err := createRunDir(base, "g1")
	if err != nil {
		t.Fatalf("createRunDir = %v", err)
	}
	for _, d := range []string{base, dir} {
		st, err := os.Stat(d)
		if err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("mode of %s = %v, %v, want 0700", d, st.Mode(), err)
		}
	}

	// A live guest of that name: refused.
	holder := startHolder(t, dir)
	if err := writeState(dir, State{Name: "g1", PIDs: []int{holder.Process.Pid}, Vsock: filepath.Join(dir, "vm.vsock")}); err != nil {
		t.Fatal(err)
	}
	if _, err := createRunDir(base, "g1"); !errors.Is(err, ErrExists) {
		t.Errorf("createRunDir over a live guest = %v, want ErrExists", err)
	}
	guests, err := List(base, false)
	if err != nil || len(guests) != 1 || !guests[0].Alive || guests[0].Name != "g1" {
		t.Errorf("List = %+v, %v, want g1 alive", guests, err)
	}

	// The guest dies (a crashed launcher's VMM): the state is stale and is replaced.
	holder.Process.Kill()
	holder.Wait()
	os.WriteFile(filepath.Join(dir, "leftover.sock"), nil, 0o600)
	dir2, err := createRunDir(base, "g1")
	if err != nil {
		t.Fatalf("createRunDir over stale state = %v, want it cleaned", err)
	}
	if _, err := os.Stat(filepath.Join(dir2, "leftover.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale file survived: %v", err)
	}
}

func TestListAndStopCleanStale(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "dead")
	os.Mkdir(dir, 0o700)
	// A pid that is alive but belongs to something else (pid reuse) does not count.
	other := startHolder(t, "/somewhere/else")
	writeState(dir, State{Name: "dead", PIDs: []int{other.Process.Pid}, Vsock: filepath.Join(dir, "vm.vsock")})
	guests, err := List(base, false)
	if err != nil || len(guests) != 0 {
		t.Errorf("List = %+v, %v, want no guests", guests, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("List left stale %s: %v", dir, err)
	}
	if other.ProcessState != nil {
		t.Errorf("cleaning stale state killed an unrelated process")
	}

	live := filepath.Join(base, "orphan")
	os.Mkdir(live, 0o700)
	h := startHolder(t, live)
	writeState(live, State{Name: "orphan", PIDs: []int{h.Process.Pid}, Vsock: filepath.Join(live, "vm.vsock")})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// No agent answers on its vsock: Stop must still kill the VMM and remove the state.
	if err := Stop(ctx, base, "orphan"); err != nil {
		t.Errorf("Stop(orphan) = %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- h.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Errorf("Stop(orphan) left its VMM process running")
	}
	if _, err := os.Stat(live); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Stop left %s: %v", live, err)
	}
	if err := Stop(ctx, base, "nope"); !errors.Is(err, ErrNoGuest) {
		t.Errorf("Stop(nope) = %v, want ErrNoGuest", err)
	}
	if err := Stop(ctx, base, "../etc"); !errors.Is(err, ErrBadName) {
		t.Errorf("Stop(../etc) = %v, want ErrBadName", err)
	}
}

func TestNewRefusesBadInput(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		o       Options
		wantErr string
	}{
		{"unknown vmm", Options{VMM: "xen", ImageDir: t.TempDir()}, "unknown VMM"},
		{"memory too small", Options{MemoryMiB: 64, ImageDir: t.TempDir()}, "too small"},
		{"bad name", Options{Name: "a/b", ImageDir: t.TempDir()}, "guest name"},
		{"no image", Options{ImageDir: filepath.Join(t.TempDir(), "out"), RunBase: t.TempDir()}, "make image"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(ctx, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("New(%+v) = %v, want error containing %q", tc.o, err, tc.wantErr)
			}
		})
	}
}
