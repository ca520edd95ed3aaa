package container

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeProc writes /proc/PID/stat files under a temporary root: pid -> "state ppid start".
func fakeProc(t *testing.T, procs map[int][3]string) string {
	t.Helper()
	root := t.TempDir()
	for pid, p := range procs {
		dir := filepath.Join(root, fmt.Sprint(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// The command name may hold spaces and parentheses.
		stat := fmt.Sprintf("%d (runc:[1:CHILD) x) %s %s 1 1 0 -1 0 0 0 0 0 0 0 0 20 0 1 0 %s 0 0\n", pid, p[0], p[1], p[2])
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestOrphansSweep(t *testing.T) {
	const agent = 40
	root := fakeProc(t, map[int][3]string{
		100: {"Z", "40", "500"}, // an orphan
		101: {"Z", "40", "501"}, // a zombie the manager's wait reaps
		102: {"S", "40", "502"}, // running
		103: {"Z", "7", "503"},  // another process's child
	})
	var reaped []int
	o := orphans{procRoot: root, parent: agent, seen: map[zombie]time.Time{},
		waited: func(pid int) bool { return pid == 101 },
		reap:   func(pid int) error { reaped = append(reaped, pid); return nil }}
	t0 := time.Now()
	for _, tc := range []struct {
		at          time.Time
		wantReaped  []int
		wantPending bool
	}{
		{t0, nil, true},                          // first seen: within its grace
		{t0.Add(orphanGrace / 2), nil, true},     // still within
		{t0.Add(orphanGrace), []int{100}, false}, // reaped once its grace is over
	} {
		reaped = nil
		got, pending, err := o.sweep(tc.at)
		if err != nil || !slices.Equal(reaped, tc.wantReaped) || pending != tc.wantPending || len(got) != len(tc.wantReaped) {
			t.Errorf("sweep(+%s) reaped %v (%v), pending %v, err %v; want %v, pending %v", tc.at.Sub(t0), reaped, got, pending, err, tc.wantReaped, tc.wantPending)
		}
	}
	// A PID reused by a new zombie starts a grace of its own.
	root = fakeProc(t, map[int][3]string{100: {"Z", "40", "900"}})
	o.procRoot, reaped = root, nil
	if _, pending, _ := o.sweep(t0.Add(2 * orphanGrace)); len(reaped) != 0 || !pending {
		t.Errorf("sweep of a reused PID reaped %v, pending %v; want none reaped, pending", reaped, pending)
	}
}

// TestZombieChild: zombieChild sees an exited, unreaped child, leaves it for its waiter, and
// sees none once it is reaped or while the child runs. It runs in a test process of its own,
// whose only children are its own.
func TestZombieChild(t *testing.T) {
	const inner = "CONFGUEST_TEST_ZOMBIE_CHILD"
	if os.Getenv(inner) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestZombieChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), inner+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || strings.Contains(string(out), "no tests to run") {
			t.Fatalf("TestZombieChild in a process of its own: %v\n%s", err, out)
		}
		return
	}
	if zombieChild() {
		t.Fatal("zombieChild() = true before this test started a child")
	}
	running := exec.Command("sleep", "60")
	if err := running.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { running.Process.Kill(); running.Wait() }()
	exited := exec.Command("sh", "-c", "exit 7")
	if err := exited.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !zombieChild(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("zombieChild() = false 10 s after a child exited")
		}
	}
	// Left for its waiter: the exit status is still there to collect.
	if err := exited.Wait(); err == nil || exited.ProcessState.ExitCode() != 7 {
		t.Fatalf("the child's wait after zombieChild = %v (exit %d); want exit status 7", err, exited.ProcessState.ExitCode())
	}
	if zombieChild() {
		t.Error("zombieChild() = true with one child running and the exited one reaped")
	}
}

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want procStat
		ok   bool
	}{
		{"7 (sleep) Z 40 7 7 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0", procStat{"Z", 40, 12345}, true},
		{"8 (a) b (c) S 1 8 8 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0", procStat{"S", 1, 99}, true},
		{"9 (short) Z 40", procStat{}, false},
		{"no parentheses", procStat{}, false},
	} {
		if got, ok := parseStat(tc.in); got != tc.want || ok != tc.ok {
			t.Errorf("parseStat(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
