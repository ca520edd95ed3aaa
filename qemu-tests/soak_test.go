package qemutests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"confguest/agent/api/policy"
	agentv1 "confguest/agent/api/v1"
	"confguest/agent/container"
	"confguest/agent/output"
	"confguest/hostside/launcher"
	"confguest/hostside/vmm"
)

// TestSoak runs many container lifecycles in one guest (make soak) and
// fails when anything the agent or the host holds grows beyond the bounds
// in soakCounters. It runs only with CONFGUEST_SOAK=1; CONFGUEST_SOAK_CYCLES
// sets the number of lifecycles (default 1000).
//
// Each cycle creates a container (init: sleep), starts it, runs one of the
// soakKinds as an exec'd process with its output streamed and checked,
// waits for it, ends the init process with SIGKILL on even cycles (or
// leaves it to the delete), and deletes the container. The counters are
// read before the first cycle, after the checkpoint cycle (100, or half the
// cycles when there are fewer than 200) and after the last, each time once
// the agent is idle (no container for longer than the layer linger and the
// idle release).
func TestSoak(t *testing.T) {
	cycles, checkpoint := soakLength(t, "CONFGUEST_SOAK_CYCLES", 1000)
	img := needImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 24*time.Hour)
	defer cancel()
	sb := newSandbox(ctx, t, img, 512)
	disk := busyboxDisk(ctx, t, sb, "head", "yes", "read")
	entry := launcher.PolicyEntry("soak", disk.Verity.RootHash, launcher.ContainerSpec(soakInit, "soak"))
	entry.Hostname = policy.Match{Pattern: "soak-[0-9]{5}"} // each container's ID
	for _, k := range soakKinds {
		entry.Exec = append(entry.Exec, launcher.ExecRule(k.proc))
	}
	g := bootUnderPolicy(ctx, t, sb, policy.Policy{Version: policy.Version, Agent: policy.AgentRules{Stats: true, Shutdown: true},
		Containers: []policy.Container{entry}})
	base := filepath.Dir(g.Dir())

	start := time.Now()
	before := soakSample(ctx, t, g, base)
	var atCheckpoint soakSnapshot
	durations := make([]time.Duration, 0, cycles)
	for i := 1; i <= cycles; i++ {
		cs := time.Now()
		cctx, cancel := context.WithTimeout(ctx, soakCycleTimeout)
		err := soakCycle(cctx, g, disk, i)
		cancel()
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		durations = append(durations, time.Since(cs))
		if i == checkpoint {
			atCheckpoint = soakSample(ctx, t, g, base)
			// Logged now too, so that a run stopped early still shows it.
			t.Logf("at cycle %d: agent %v", i, atCheckpoint.agent)
		}
		if i%100 == 0 {
			t.Logf("%d cycles in %v", i, time.Since(start).Round(time.Second))
		}
	}
	after := soakSample(ctx, t, g, base)
	wall := time.Since(start)

	slices.Sort(durations)
	t.Logf("%d lifecycles in %v: per cycle median %v, 90th percentile %v, max %v", cycles, wall.Round(time.Second),
		durations[len(durations)/2].Round(time.Millisecond), durations[len(durations)*9/10].Round(time.Millisecond),
		durations[len(durations)-1].Round(time.Millisecond))
	rows, leaks := soakVerdict(before, atCheckpoint, after, checkpoint, cycles)
	for _, r := range rows {
		t.Log(r)
	}
	for _, l := range leaks {
		t.Error(l)
	}
}

// soakLength skips t unless CONFGUEST_SOAK=1, and returns the number of cycles (from the
// environment variable env, else def) and the checkpoint cycle: a tenth of def, or half the
// cycles when there are fewer than twice that.
func soakLength(t *testing.T, env string, def int) (cycles, checkpoint int) {
	t.Helper()
	if os.Getenv("CONFGUEST_SOAK") != "1" {
		t.Skip("set CONFGUEST_SOAK=1 (make soak) to run the soak test")
	}
	cycles = def
	if s := os.Getenv(env); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 2 {
			t.Fatalf("%s=%q: want a number of cycles, at least 2", env, s)
		}
		cycles = n
	}
	checkpoint = def / 10
	if cycles < 2*checkpoint {
		checkpoint = cycles / 2
	}
	return cycles, checkpoint
}

// soakCycleTimeout bounds one lifecycle: a wedged one fails the test
// instead of holding it up.
const soakCycleTimeout = 2 * time.Minute

// soakInit is every soak container's init process.
var soakInit = launcher.Process{Args: []string{"sleep", "100000"}, Cwd: "/", Env: []string{"PATH=/bin"}}

// soakLine is what the large outputs repeat.
const soakLine = "confguest-soak-output-0123456789\n"

// soakKinds are the exec'd processes the cycles take turns with: exit
// codes, stdout and stderr, a signal, a TTY with stdin, output larger than
// the agent's buffer read as it is produced, and the same left unread
// until the process exited.
var soakKinds = []struct {
	name string
	proc launcher.Process
	run  func(ctx context.Context, g *launcher.Guest, id, execID string, p launcher.Process) error
}{
	{"exit code", soakProc(false, "sh", "-c", "echo out; echo err >&2; exit 3"), func(ctx context.Context, g *launcher.Guest, id, execID string, p launcher.Process) error {
		var out, errOut bytes.Buffer
		code, err := g.Exec(ctx, id, execID, p, launcher.IO{Stdout: &out, Stderr: &errOut})
		if err != nil || code != 3 || out.String() != "out\n" || errOut.String() != "err\n" {
			return fmt.Errorf("exit 3: code %d, stdout %q, stderr %q, %v; want 3, \"out\\n\", \"err\\n\"", code, out.String(), errOut.String(), err)
		}
		return nil
	}},
	{"large output", soakProc(false, "sh", "-c", "yes "+strings.TrimSpace(soakLine)+" | head -c 4194304"), func(ctx context.Context, g *launcher.Guest, id, execID string, p launcher.Process) error {
		w := &lineChecker{line: soakLine}
		code, err := g.Exec(ctx, id, execID, p, launcher.IO{Stdout: w})
		if err != nil || code != 0 || w.n != 4<<20 || w.bad {
			return fmt.Errorf("4 MiB of stdout: code %d, %d bytes (wrong content: %v), %v; want 0 and 4194304 bytes of %q lines", code, w.n, w.bad, err, soakLine)
		}
		return nil
	}},
	{"tty", soakProc(true, "sh", "-c", "read l; echo got:$l; exit 4"), func(ctx context.Context, g *launcher.Guest, id, execID string, p launcher.Process) error {
		var out bytes.Buffer
		code, err := g.Exec(ctx, id, execID, p, launcher.IO{Stdin: strings.NewReader("ping\n"), Stdout: &out})
		if err != nil || code != 4 || !strings.Contains(out.String(), "got:ping\r\n") {
			return fmt.Errorf("tty: code %d, output %q, %v; want 4 and got:ping", code, out.String(), err)
		}
		return nil
	}},
	{"signal", soakProc(false, "sleep", "100000"), func(ctx context.Context, g *launcher.Guest, id, execID string, p launcher.Process) error {
		if _, err := g.StartExec(ctx, id, execID, launcher.ContainerSpec(p, id).Process, launcher.Stdio{}); err != nil {
			return err
		}
		ref := launcher.ProcessRef{ContainerID: id, ExecID: execID}
		if err := g.Signal(ctx, ref, 15, false); err != nil {
			return err
		}
		if e, err := g.Wait(ctx, ref); err != nil || e.Code != 143 {
			return fmt.Errorf("SIGTERM: exit %d, %v; want 143", e.Code, err)
		}
		return nil
	}},
	{"unread output", soakProc(false, "sh", "-c", "yes "+strings.TrimSpace(soakLine)+" | head -c 3145728; exit 5"), func(ctx context.Context, g *launcher.Guest, id, execID string, p launcher.Process) error {
		if _, err := g.StartExec(ctx, id, execID, launcher.ContainerSpec(p, id).Process, launcher.Stdio{}); err != nil {
			return err
		}
		ref := launcher.ProcessRef{ContainerID: id, ExecID: execID}
		if e, err := g.Wait(ctx, ref); err != nil || e.Code != 5 {
			return fmt.Errorf("unread output: exit %d, %v; want 5", e.Code, err)
		}
		// Read only now: the agent kept the newest output.DefaultLimit
		// bytes and reports the rest as dropped, exactly.
		w := &lineChecker{line: soakLine, offset: (3<<20 - output.DefaultLimit) % len(soakLine)}
		dropped, err := agentv1.CopyOutput(ctx, g.Agent(), &agentv1.ProcessRef{ContainerId: id, ExecId: execID}, agentv1.OutputStream_OUTPUT_STREAM_STDOUT, w)
		if err != nil || w.n != output.DefaultLimit || dropped != 3<<20-output.DefaultLimit || w.bad {
			return fmt.Errorf("late read of 3 MiB: got %d bytes (wrong content: %v), %d dropped, %v; want %d and %d", w.n, w.bad, dropped, err, output.DefaultLimit, 3<<20-output.DefaultLimit)
		}
		return nil
	}},
}

func soakProc(tty bool, args ...string) launcher.Process {
	p := launcher.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin"}, TTY: tty, Stdin: tty}
	if tty {
		p.Width, p.Height = 80, 24
	}
	return p
}

// soakCycle runs lifecycle i: create, start, one exec'd process of the
// cycle's kind, the init's end, delete.
func soakCycle(ctx context.Context, g *launcher.Guest, disk launcher.Disk, i int) error {
	id := fmt.Sprintf("soak-%05d", i)
	if _, err := g.CreateContainer(ctx, id, disk, launcher.ContainerSpec(soakInit, id), launcher.Stdio{}); err != nil {
		return err
	}
	if err := g.Start(ctx, id); err != nil {
		return err
	}
	k := soakKinds[i%len(soakKinds)]
	if err := k.run(ctx, g, id, "x", k.proc); err != nil {
		return fmt.Errorf("%s: %w", k.name, err)
	}
	if i%2 == 0 {
		init := launcher.ProcessRef{ContainerID: id}
		if err := g.Signal(ctx, init, 9, false); err != nil {
			return err
		}
		if e, err := g.Wait(ctx, init); err != nil || e.Code != 137 {
			return fmt.Errorf("SIGKILL of init: exit %d, %v; want 137", e.Code, err)
		}
	}
	return g.Delete(ctx, id)
}

// lineChecker counts what is written and notes whether it is anything but
// line repeated, starting offset bytes into it.
type lineChecker struct {
	line   string
	offset int
	n      int
	bad    bool
}

func (w *lineChecker) Write(p []byte) (int, error) {
	for _, c := range p {
		if c != w.line[(w.offset+w.n)%len(w.line)] {
			w.bad = true
		}
		w.n++
	}
	return len(p), nil
}

// soakSnapshot is what the agent reports about itself and the guest, and
// what the host holds for the guest.
type soakSnapshot struct {
	agent *agentv1.AgentStats
	// host: the guest's host processes (VMM and vsock backend) and their
	// open files and sockets; this test process's open files, sockets and
	// goroutines; the files under the run base.
	hostProcs, hostFDs, hostSockets    int
	selfFDs, selfSockets, selfRoutines int
	runFiles                           int
	runBytes                           int64 // the console log excluded
	consoleBytes                       int64 // allocated, not its size (the launcher frees all but its tail)
}

// soakCounters are what TestSoak compares, with the growth allowed from
// the checkpoint to the end; baseline counters must also be back at their
// value before the first cycle.
//
// Each count is read once the agent is idle, so every bound below is for
// nothing in flight. The agent's open files and goroutines may warm up
// before the checkpoint (the first block layer, libcontainer's and the
// runtime's one-time state), not after. Its resident memory may move with
// the Go heap's scavenging: 4 MiB over the cycles after the checkpoint,
// where a leak of one 4 KiB page per cycle would show as 3.5 MiB over 900.
// The guest's cgroups gain one for good with the first container (the
// agent's parent cgroup of all containers). The console log gets the
// guest's log lines for each container; the launcher frees all but its last
// vmm.LogKeep bytes every few seconds, so the storage it holds may grow
// by that and what a few seconds of cycles print (64 KiB), however many
// cycles run. It is left out of the other bytes under the run base.
var soakCounters = []soakCounter[soakSnapshot]{
	{"agent open fds", func(s soakSnapshot) int64 { return int64(s.agent.GetOpenFds()) }, 0, 0, false},
	{"agent goroutines", func(s soakSnapshot) int64 { return int64(s.agent.GetGoroutines()) }, 0, 0, false},
	{"agent RSS KiB", func(s soakSnapshot) int64 { return int64(s.agent.GetRssBytes() >> 10) }, 4 << 10, 0, false},
	{"agent threads", func(s soakSnapshot) int64 { return int64(s.agent.GetThreads()) }, 2, 0, false},
	{"guest mounts", func(s soakSnapshot) int64 { return int64(s.agent.GetMounts()) }, 0, 0, true},
	{"guest dm devices", func(s soakSnapshot) int64 { return int64(s.agent.GetDmDevices()) }, 0, 0, true},
	{"guest cgroups", func(s soakSnapshot) int64 { return int64(s.agent.GetCgroups()) }, 0, 0, false},
	{"guest processes", func(s soakSnapshot) int64 { return int64(s.agent.GetProcesses()) }, 0, 0, true},
	{"host VMM processes", func(s soakSnapshot) int64 { return int64(s.hostProcs) }, 0, 0, true},
	{"host VMM open fds", func(s soakSnapshot) int64 { return int64(s.hostFDs) }, 0, 0, false},
	{"host VMM sockets", func(s soakSnapshot) int64 { return int64(s.hostSockets) }, 0, 0, false},
	{"host client open fds", func(s soakSnapshot) int64 { return int64(s.selfFDs) }, 0, 0, false},
	{"host client sockets", func(s soakSnapshot) int64 { return int64(s.selfSockets) }, 0, 0, false},
	{"host client goroutines", func(s soakSnapshot) int64 { return int64(s.selfRoutines) }, 0, 0, false},
	{"host run dir files", func(s soakSnapshot) int64 { return int64(s.runFiles) }, 0, 0, true},
	{"host run dir bytes", func(s soakSnapshot) int64 { return s.runBytes }, 0, 0, false},
	{"host console log bytes", func(s soakSnapshot) int64 { return s.consoleBytes }, vmm.LogKeep + 64<<10, 0, false},
}

// soakCounter is one figure a soak reads from its snapshots of type S: the growth allowed
// from the checkpoint to the end, and whether it must be back at its value before the
// first cycle.
type soakCounter[S any] struct {
	name     string
	get      func(S) int64
	bound    int64
	perCycle int64 // growth allowed per cycle after the checkpoint, on top of bound
	baseline bool
}

// soakVerdict compares the counters read before the first cycle, at the checkpoint and
// after the last of cycles with soakCounters' bounds. It returns a table (a header and a
// row per counter) and one line for each bound passed.
func soakVerdict(before, atCheckpoint, after soakSnapshot, checkpoint, cycles int) (rows, leaks []string) {
	return verdictOf(soakCounters, before, atCheckpoint, after, checkpoint, cycles)
}

// verdictOf is soakVerdict for any soak's counters.
func verdictOf[S any](counters []soakCounter[S], before, atCheckpoint, after S, checkpoint, cycles int) (rows, leaks []string) {
	rows = append(rows, fmt.Sprintf("%-26s %12s %12s %12s %8s %8s", "counter", "before", "cycle "+strconv.Itoa(checkpoint), "cycle "+strconv.Itoa(cycles), "growth", "bound"))
	for _, c := range counters {
		b, m, a := c.get(before), c.get(atCheckpoint), c.get(after)
		growth, bound := a-m, c.bound+c.perCycle*int64(cycles-checkpoint)
		rows = append(rows, fmt.Sprintf("%-26s %12d %12d %12d %+8d %8d", c.name, b, m, a, growth, bound))
		if growth > bound {
			leaks = append(leaks, fmt.Sprintf("%s grew by %d from cycle %d to cycle %d (%d to %d), bound %d: a leak", c.name, growth, checkpoint, cycles, m, a, bound))
		}
		if c.baseline && a != b {
			leaks = append(leaks, fmt.Sprintf("%s is %d after the last cycle, %d before the first: the deleted containers left something", c.name, a, b))
		}
	}
	return rows, leaks
}

// soakSample waits until the agent is idle and reads the counters.
func soakSample(ctx context.Context, t *testing.T, g *launcher.Guest, base string) soakSnapshot {
	t.Helper()
	time.Sleep(container.DefaultLayerLinger + container.IdleRelease + time.Second)
	st, err := g.Stats(ctx, "")
	if err != nil {
		t.Fatalf("Stats of the agent: %v", err)
	}
	s := soakSnapshot{agent: st.GetAgent(), selfRoutines: runtime.NumGoroutine()}
	if s.agent.GetProcesses() == 0 {
		t.Fatalf("Stats of the agent = %v: no counts of what it holds (an agent older than this test)", st)
	}
	state, err := launcher.ReadState(g.Dir())
	if err != nil {
		t.Fatalf("read the guest's state: %v", err)
	}
	for _, pid := range state.PIDs {
		if !pidAlive(pid) {
			continue
		}
		s.hostProcs++
		fds, socks := countFDs(t, "/proc/"+strconv.Itoa(pid)+"/fd")
		s.hostFDs += fds
		s.hostSockets += socks
	}
	s.selfFDs, s.selfSockets = countFDs(t, "/proc/self/fd")
	err = filepath.WalkDir(base, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		s.runFiles++
		info, err := d.Info()
		switch {
		case err != nil:
			return err
		case path == state.Console:
			s.consoleBytes = info.Sys().(*syscall.Stat_t).Blocks * 512
		default:
			s.runBytes += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk the run base %s: %v", base, err)
	}
	return s
}

// countFDs counts the open file descriptors in a /proc/<pid>/fd directory
// and those that are sockets.
func countFDs(t *testing.T, dir string) (fds, sockets int) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("count open files: %v", err)
	}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // the descriptor ReadDir used, closed since
		}
		fds++
		if strings.HasPrefix(target, "socket:") {
			sockets++
		}
	}
	return fds, sockets
}

// pidAlive reports whether pid is a live process (not a zombie).
func pidAlive(pid int) bool {
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(st, ')')
	return i > 0 && len(st) > i+2 && st[i+2] != 'Z'
}
