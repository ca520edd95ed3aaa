package server

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	agentv1 "confguest/agent/api/v1"
	"confguest/agent/api/v1/wire"
	"confguest/agent/container"
)

func TestParseAgentStats(t *testing.T) {
	const status = "Name:\tagent\nVmHWM:\t   14020 kB\nVmRSS:\t   13312 kB\nRssAnon:\t    2448 kB\nRssFile:\t   10864 kB\nRssShmem:\t       0 kB\nThreads:\t7\n"
	tests := []struct {
		name    string
		status  string
		want    *wire.AgentStats
		wantErr string
	}{
		{"all fields", status, &wire.AgentStats{RssBytes: 13312 << 10, RssAnonBytes: 2448 << 10, RssFileBytes: 10864 << 10,
			PeakRssBytes: 14020 << 10, Threads: 7}, ""},
		{"no RssAnon", strings.Replace(status, "RssAnon:", "Rss_Anon:", 1), nil, "RssAnon missing"},
		{"not kB", strings.Replace(status, "13312 kB", "13312 MB", 1), nil, "VmRSS"},
		{"not a number", strings.Replace(status, "Threads:\t7", "Threads:\tseven", 1), nil, "Threads"},
		{"empty", "", nil, "RssAnon, RssFile, Threads, VmHWM, VmRSS missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseAgentStats(tc.status)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseAgentStats(%q) = %v, %v; want an error naming %q", tc.status, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("parseAgentStats(%q) = %v, %v; want %v", tc.status, got, err, tc.want)
			}
		})
	}
}

// fakeRoots lays out a procfs, sysfs and cgroup2 tree with 3 open files,
// 2 mounts, 2 device-mapper devices (beside a disk and a loop device), 3
// cgroups (the root included) and 2 processes (beside 2 kernel threads).
func fakeRoots(t *testing.T) statRoots {
	t.Helper()
	dir := t.TempDir()
	r := statRoots{proc: filepath.Join(dir, "proc"), sys: filepath.Join(dir, "sys"), cgroup: filepath.Join(dir, "cgroup")}
	files := map[string]string{
		"proc/self/fd/0": "", "proc/self/fd/1": "", "proc/self/fd/7": "",
		"proc/self/mountinfo": "22 1 254:0 / / ro - erofs /dev/dm-0 ro\n23 22 0:5 / /dev rw - devtmpfs devtmpfs rw\n",
		"proc/1/stat":         "1 (init) S 0 1 1 0", "proc/215/stat": "215 (agent) S 1 215 215 0",
		"proc/2/stat": "2 (kthreadd) S 0 0 0 0", "proc/9/stat": "9 (kworker/0:1-ev ents) I 2 0 0 0",
		"proc/sys/kernel/x":  "",
		"sys/block/dm-0/dev": "", "sys/block/dm-3/dev": "", "sys/block/vda/dev": "", "sys/block/loop0/dev": "",
		"cgroup/cgroup.procs": "", "cgroup/confguest/c1/cgroup.procs": "",
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func TestCountHeld(t *testing.T) {
	r := fakeRoots(t)
	var st wire.AgentStats
	if err := countHeld(&st, r); err != nil {
		t.Fatalf("countHeld = %v", err)
	}
	got := [...]uint32{st.OpenFds, st.Mounts, st.DmDevices, st.Cgroups, st.Processes}
	if want := [...]uint32{3, 2, 2, 3, 2}; got != want || st.Goroutines == 0 {
		t.Errorf("countHeld: fds, mounts, dm, cgroups, processes = %v, goroutines %d; want %v and some goroutines", got, st.Goroutines, want)
	}

	tests := []struct {
		name, remove, wantErr string
	}{
		{"no fd directory", "proc/self/fd", "count open files"},
		{"no mountinfo", "proc/self/mountinfo", "count mounts"},
		{"no sysfs", "sys", "count device-mapper devices"},
		{"no cgroup2 mount", "cgroup", "count cgroups"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := fakeRoots(t)
			if err := os.RemoveAll(filepath.Join(filepath.Dir(r.proc), tc.remove)); err != nil {
				t.Fatal(err)
			}
			if err := countHeld(&wire.AgentStats{}, r); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("countHeld without %s = %v, want an error naming %q", tc.remove, err, tc.wantErr)
			}
		})
	}
}

// TestAgentStats asks the agent for its own memory through the API: the
// agent of these tests runs in the test process, so its figures are this
// process's.
func TestAgentStats(t *testing.T) {
	ta := startAgent(t, nil, container.Config{})
	r, err := ta.client.Stats(ctx(t), &agentv1.StatsRequest{})
	if err != nil {
		t.Fatalf("Stats(agent) = %v", err)
	}
	a := r.GetAgent()
	if a.GetRssBytes() == 0 || a.GetRssAnonBytes() == 0 || a.GetRssFileBytes() == 0 || a.GetThreads() == 0 {
		t.Errorf("Stats(agent) = %v, want resident, anonymous and file memory and threads", r)
	}
	if a.GetRssAnonBytes()+a.GetRssFileBytes() > a.GetRssBytes() || a.GetPeakRssBytes() < a.GetRssBytes() {
		t.Errorf("Stats(agent) = %v, want RssAnon+RssFile <= VmRSS <= VmHWM", r)
	}
	// The counts are the host's here, which other processes change: only
	// their presence is certain (this host has no device-mapper).
	if a.GetOpenFds() == 0 || a.GetGoroutines() == 0 || a.GetMounts() == 0 || a.GetCgroups() == 0 || a.GetProcesses() == 0 {
		t.Errorf("Stats(agent) = %v, want open files, goroutines, mounts, cgroups and processes", r)
	}
	if r.GetMemory() != nil || r.GetPids() != nil {
		t.Errorf("Stats(agent) = %v, want no container figures", r)
	}
	for _, id := range []string{"../x", "a/b", strings.Repeat("a", 65), "a\x00b"} {
		if _, err := ta.client.Stats(ctx(t), &agentv1.StatsRequest{ContainerId: id}); code(err) != codes.InvalidArgument {
			t.Errorf("Stats(%q) = %v, want InvalidArgument", id, err)
		}
	}
	if _, err := ta.client.Stats(ctx(t), &agentv1.StatsRequest{ContainerId: "none"}); code(err) != codes.NotFound {
		t.Errorf("Stats(%q) = %v, want NotFound", "none", err)
	}
}

// TestWaitingHoldsNoThread: the agent waits for its containers' processes through their
// pidfds and the runtime's poller, so processes that run on hold no thread each (a
// blocking wait would take one per process for as long as it runs).
func TestWaitingHoldsNoThread(t *testing.T) {
	ta := startAgent(t, nil, container.Config{})
	threads := func() uint32 {
		r, err := ta.client.Stats(ctx(t), &agentv1.StatsRequest{})
		if err != nil {
			t.Fatalf("Stats(agent) = %v", err)
		}
		return r.GetAgent().GetThreads()
	}
	// Warm up: the first containers start the threads any create needs.
	for i := range 2 {
		ta.createStarted(t, fmt.Sprintf("warm%d", i), spec(t, false, "sleep", "60"))
	}
	time.Sleep(200 * time.Millisecond)
	before := threads()
	const n = 12
	for i := range n {
		ta.createStarted(t, fmt.Sprintf("s%d", i), spec(t, false, "sleep", "60"))
	}
	time.Sleep(200 * time.Millisecond)
	after := threads()
	t.Logf("threads: %d with 2 sleeping containers, %d with %d more", before, after, n)
	if after >= before+n/2 {
		t.Errorf("threads: %d with 2 sleeping containers, %d with %d more: want no thread per waiting process", before, after, n)
	}
}
