package qemutests

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"confguest/agent/api/policy"
	agentv1 "confguest/agent/api/v1"
	"confguest/agent/api/v1/outputtest"
	"confguest/agent/container"
	"confguest/build/guestimage"
	"confguest/hostside/image"
	"confguest/hostside/launcher"
	"confguest/hostside/vsock"
)

// resumeLines is the seq of TestAgentInGuest's dropped connection: 938,896 bytes.
const resumeLines = 150000

// TestAgentInGuest drives the agent API directly over vsock in the real
// guest: a busybox container from an erofs+verity disk, exec into it, a
// SIGTERM'd process reports the signal, 100 MiB of stdout arrive with the
// producer's SHA-256, a TTY exec round-trips a line, and an output stream
// whose connection drops with chunks in flight resumes on a new one with
// nothing lost.
func TestAgentInGuest(t *testing.T) {
	img := needImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	sb := newSandbox(ctx, t, img, 512)
	disk := busyboxDisk(ctx, t, sb, "head", "yes", "sha256sum", "read", "stty", "seq")
	// The agent obeys a measured policy: admit exactly the containers and
	// exec'd commands below.
	const id = "svc"
	path := []string{"PATH=/bin"}
	svcProc := launcher.Process{Args: []string{"sleep", "1000"}, Cwd: "/", Env: path}
	svc := launcher.PolicyEntry("svc", disk.Verity.RootHash, launcher.ContainerSpec(svcProc, id))
	for _, p := range []launcher.Process{
		{Args: []string{"sh", "-c", "echo hi; exit 7"}},
		{Args: []string{"sleep", "1000"}},
		{Args: []string{"sh", "-c", "yes confguest-agent-100MiB-0123456789 | head -c 104857600"}},
		{Args: []string{"sh", "-c", "read l; echo got:$l"}, TTY: true, Stdin: true},
		{Args: []string{"seq", "1", strconv.Itoa(resumeLines)}},
	} {
		p.Cwd, p.Env = "/", path
		svc.Exec = append(svc.Exec, launcher.ExecRule(p))
	}
	again := launcher.PolicyEntry("again", disk.Verity.RootHash, launcher.ContainerSpec(launcher.Process{Args: []string{"true"}, Cwd: "/", Env: path}, "again"))
	g := bootUnderPolicy(ctx, t, sb, policy.Policy{Version: policy.Version, Agent: policy.AgentRules{Stats: true, Shutdown: true},
		Containers: []policy.Container{svc, again}})
	a := g.Agent()

	if _, err := g.CreateContainer(ctx, id, disk, launcher.ContainerSpec(svcProc, id), launcher.Stdio{}); err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if _, err := a.StartContainer(ctx, &agentv1.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	exec := func(t *testing.T, execID string, terminal, stdin bool, args ...string) *agentv1.ProcessRef {
		t.Helper()
		// The entry pins no_new_privileges on (launcher.ContainerSpec): an exec keeps it.
		p, _ := json.Marshal(specs.Process{Terminal: terminal, Args: args, Cwd: "/", Env: []string{"PATH=/bin"}, NoNewPrivileges: true})
		if _, err := a.ExecProcess(ctx, &agentv1.ExecProcessRequest{ContainerId: id, ExecId: execID, ProcessJson: p,
			Stdio: &agentv1.StdioOptions{Stdin: stdin, TtyWidth: 80, TtyHeight: 24}}); err != nil {
			t.Fatalf("ExecProcess(%s) = %v", execID, err)
		}
		return &agentv1.ProcessRef{ContainerId: id, ExecId: execID}
	}
	wait := func(t *testing.T, ref *agentv1.ProcessRef) *agentv1.WaitProcessResponse {
		t.Helper()
		w, err := a.WaitProcess(ctx, &agentv1.WaitProcessRequest{Process: ref})
		if err != nil {
			t.Fatalf("WaitProcess(%v) = %v", ref, err)
		}
		return w
	}

	t.Run("cgroup v2 stats", func(t *testing.T) {
		st, err := a.Stats(ctx, &agentv1.StatsRequest{ContainerId: id})
		if err != nil {
			t.Fatalf("Stats = %v", err)
		}
		if st.GetPids().GetCurrent() < 1 || st.GetMemory().GetUsageBytes() == 0 {
			t.Errorf("Stats = %v, want at least one pid and some memory", st)
		}
		t.Logf("stats: %v", st)
	})
	t.Run("agent memory", func(t *testing.T) {
		st, err := a.Stats(ctx, &agentv1.StatsRequest{})
		if err != nil {
			t.Fatalf("Stats of the agent = %v", err)
		}
		if m := st.GetAgent(); m.GetRssBytes() == 0 || m.GetRssAnonBytes()+m.GetRssFileBytes() > m.GetRssBytes() {
			t.Errorf("Stats of the agent = %v, want VmRSS at least RssAnon+RssFile and above zero", st)
		}
		t.Logf("agent: %v", st.GetAgent())
	})
	t.Run("exit code", func(t *testing.T) {
		ref := exec(t, "seven", false, false, "sh", "-c", "echo hi; exit 7")
		var out bytes.Buffer
		if _, err := agentv1.CopyOutput(ctx, a, ref, agentv1.OutputStream_OUTPUT_STREAM_STDOUT, &out); err != nil {
			t.Fatal(err)
		}
		if w := wait(t, ref); w.GetExitCode() != 7 || out.String() != "hi\n" {
			t.Errorf("sh -c 'echo hi; exit 7' = %q, exit %d; want \"hi\\n\", 7", out.String(), w.GetExitCode())
		}
	})
	t.Run("SIGTERM", func(t *testing.T) {
		ref := exec(t, "sleeper", false, false, "sleep", "1000")
		if _, err := a.SignalProcess(ctx, &agentv1.SignalProcessRequest{Process: ref, Signal: 15}); err != nil {
			t.Fatal(err)
		}
		if w := wait(t, ref); w.GetSignal() != 15 || w.GetExitCode() != 143 {
			t.Errorf("SIGTERM'd sleep = exit %d signal %d, want 143, 15", w.GetExitCode(), w.GetSignal())
		}
	})
	t.Run("100 MiB stdout", func(t *testing.T) {
		const size = 100 << 20
		line := "confguest-agent-100MiB-0123456789\n"
		want := sha256.New()
		for n := 0; n < size; n += len(line) {
			want.Write([]byte(line[:min(len(line), size-n)]))
		}
		ref := exec(t, "big", false, false, "sh", "-c", "yes "+strings.TrimSpace(line)+" | head -c 104857600")
		got := sha256.New()
		start := time.Now()
		dropped, err := agentv1.CopyOutput(ctx, a, ref, agentv1.OutputStream_OUTPUT_STREAM_STDOUT, got)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("100 MiB in %v", time.Since(start))
		if g, w := hex.EncodeToString(got.Sum(nil)), hex.EncodeToString(want.Sum(nil)); g != w || dropped != 0 {
			t.Errorf("stdout sha256 %s (dropped %d), want %s", g, dropped, w)
		}
		wait(t, ref)
	})
	t.Run("TTY round trip", func(t *testing.T) {
		ref := exec(t, "tty", true, true, "sh", "-c", "read l; echo got:$l")
		var out bytes.Buffer
		done := make(chan error, 1)
		go func() {
			_, err := agentv1.CopyOutput(ctx, a, ref, agentv1.OutputStream_OUTPUT_STREAM_STDOUT, &out)
			done <- err
		}()
		if _, err := a.WriteStdin(ctx, &agentv1.WriteStdinRequest{Process: ref, Data: []byte("ping\n")}); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if w := wait(t, ref); w.GetExitCode() != 0 || !strings.Contains(out.String(), "got:ping\r\n") {
			t.Errorf("tty exec = %q, exit %d; want got:ping", out.String(), w.GetExitCode())
		}
	})
	t.Run("output resumes after a dropped connection", func(t *testing.T) {
		// A second connection to the agent through vhost-device-vsock, closed
		// with chunks in flight; the stream (938,896 bytes) fits the agent's
		// 1 MiB buffer, so the resumed reader misses nothing.
		st, err := launcher.ReadState(g.Dir())
		if err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		for i := 1; i <= resumeLines; i++ {
			fmt.Fprintf(&want, "%d\n", i)
		}
		// An exec starts at once; its output waits in the buffer for the reader.
		ref := exec(t, "seq", false, false, "seq", "1", strconv.Itoa(resumeLines))
		r, err := outputtest.DropAndResume(ctx, func() (net.Conn, error) { return vsock.Dial(ctx, st.Vsock, launcher.AgentPort) }, a,
			ref, 256<<10, func() error { return nil }, func() error { wait(t, ref); return nil })
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("dropped the connection holding %d bytes; resumed: %d bytes, %d reported lost", len(r.Before), len(r.After), r.Dropped)
		if err := r.Check(want.Bytes(), false); err != nil {
			t.Error(err)
		}
	})
	if _, err := a.DeleteContainer(ctx, &agentv1.DeleteContainerRequest{ContainerId: id}); err != nil {
		t.Errorf("DeleteContainer: %v", err)
	}
	// A second container from the same disk works after the delete (it
	// reuses the image the first one leaves open for the layer linger).
	if _, err := g.RunContainer(ctx, "again", disk, launcher.Process{Args: []string{"true"}, Cwd: "/", Env: []string{"PATH=/bin"}}, launcher.IO{}); err != nil {
		t.Errorf("RunContainer after delete: %v", err)
	}
}

// BenchmarkAgentInGuest measures, in the real policy-enforcing guest (TCG
// here), create+start+wait of `true` from a verity disk through the agent
// (median of the b.N cycles, each then deleted) against the same container
// run b.N times directly with libcontainer in the same guest (median), and
// their ratio; and the agent's resident memory, which the agent reports
// itself (Stats with no container ID):
//
//   - boot: right after the policy is installed;
//   - idle: after one warm-up cycle and the agent's idle release
//     (container.IdleRelease). One-time initialisation of the first
//     create (libcontainer's and encoding/json's caches, protobuf message
//     info, the runtime's GC metadata for the first heap) belongs to
//     serving at all, not to any number of cycles, so growth is measured
//     from here;
//   - busy: right after the b.N-th delete, before the idle release;
//   - after: once the agent is idle again.
//
// growth-% is (after-idle)/idle; growth-from-boot-% is reported beside it.
//
// Every cycle runs from the one benchmark disk, whose image the agent
// keeps open between them (its layer linger, agent/README.md) as for any
// containers that follow each other from one image; the warm-up cycle
// opens it.
//
// The direct runs are made by a libcontainer helper (/sbin/libct) built here
// with -tags benchdirect (its bench-direct mode; the image's has no such mode),
// placed on the benchmark disk and run inside a privileged container that
// the benchmark starts through the agent. The measured policy the
// benchmark installs admits exactly the two containers.
//
//	go test -run '^$' -bench BenchmarkAgentInGuest -benchtime 100x ./qemu-tests
func BenchmarkAgentInGuest(b *testing.B) {
	img := needImage(b)
	root := benchRoot(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	sb := newSandbox(ctx, b, img, 512)
	disk, err := sb.BuildDisk(ctx, image.Source{Kind: image.Dir, Ref: root})
	if err != nil {
		b.Fatalf("BuildDisk: %v", err)
	}
	spec := launcher.ContainerSpec(launcher.Process{Args: []string{"true"}, Cwd: "/", Env: []string{"PATH=/bin"}}, "bench")
	directEntry := launcher.PolicyEntry("direct", disk.Verity.RootHash, directSpec(1))
	// Any number of runs: each round runs its share of b.N.
	directEntry.Args[2] = policy.Match{Pattern: strings.Replace(regexp.QuoteMeta(directCommand("N")), " -n N ", " -n [0-9]{1,4} ", 1)}
	g := bootUnderPolicy(ctx, b, sb, policy.Policy{Version: policy.Version, Agent: policy.AgentRules{Stats: true, Shutdown: true},
		Containers: []policy.Container{launcher.PolicyEntry("bench", disk.Verity.RootHash, spec), directEntry}})
	a := g.Agent()
	const mib = 1 << 20
	split := map[string]float64{} // RssAnon and RssFile at each point, in MiB
	rss := func(name string) float64 {
		r, err := a.Stats(ctx, &agentv1.StatsRequest{})
		if err != nil {
			b.Fatalf("Stats of the agent: %v", err)
		}
		m := r.GetAgent()
		if m.GetRssBytes() == 0 {
			b.Fatalf("Stats of the agent = %v: no resident memory", r)
		}
		// Reported at the end: b.ResetTimer deletes the metrics reported before it.
		split[name+"-anon-MiB"] = float64(m.GetRssAnonBytes()) / mib
		split[name+"-file-MiB"] = float64(m.GetRssFileBytes()) / mib
		b.Logf("agent %s: VmRSS %.2f MiB, RssAnon %.2f, RssFile %.2f, VmHWM %.2f, threads %d", name,
			float64(m.GetRssBytes())/mib, float64(m.GetRssAnonBytes())/mib, float64(m.GetRssFileBytes())/mib,
			float64(m.GetPeakRssBytes())/mib, m.GetThreads())
		return float64(m.GetRssBytes()) / mib
	}
	settle := func() { time.Sleep(container.IdleRelease + time.Second) }
	settle()
	boot := rss("boot")
	runSpec(b, ctx, a, "warm-up", spec, disk.Disk, disk.Serial)
	settle()
	idle := rss("idle")
	b.ResetTimer()
	// A tenth of the way, idle once more: from there to the end tells
	// retention that grows with the cycles (a leak) from what the runtime
	// keeps once it has collected a few times (its plateau).
	tenth := 0.0
	for i := 0; i < b.N; i++ {
		runSpec(b, ctx, a, "b"+strconv.Itoa(i), spec, disk.Disk, disk.Serial)
		if b.N >= 100 && i+1 == b.N/10 {
			b.StopTimer()
			settle()
			tenth = rss("tenth")
			b.StartTimer()
		}
	}
	b.StopTimer()
	// Right after the last delete, before the agent's idle release could
	// run: this shows what the release returns.
	b.ReportMetric(rss("busy"), "busy-RSS-MiB")
	settle()
	after := rss("after")
	b.ReportMetric(boot, "boot-RSS-MiB")
	b.ReportMetric(idle, "idle-RSS-MiB")
	b.ReportMetric(after, "after-RSS-MiB")
	b.ReportMetric(100*(after-idle)/idle, "growth-%")
	b.ReportMetric(100*(after-boot)/boot, "growth-from-boot-%")
	if tenth > 0 {
		b.ReportMetric(tenth, "tenth-RSS-MiB")
		b.ReportMetric(100*(after-tenth)/tenth, "growth-from-tenth-%")
	}
	for unit, v := range split {
		b.ReportMetric(v, unit)
	}

	// Time create+start+wait of the same container through the agent and
	// directly with libcontainer (the bench-direct helper inside a
	// privileged container), b.N times each, interleaved in rounds so that
	// the load on this host weighs on both alike.
	rounds := min(b.N, 10)
	var timed []cycleTimes
	var direct []cycleTimes
	for r := 0; r < rounds; r++ {
		n := b.N / rounds
		if r < b.N%rounds {
			n++
		}
		for i := 0; i < n; i++ {
			_, t := runSpec(b, ctx, a, "t"+strconv.Itoa(len(timed)), spec, disk.Disk, disk.Serial)
			timed = append(timed, t)
		}
		out, _ := runSpec(b, ctx, a, "direct"+strconv.Itoa(r), directSpec(n), disk.Disk, disk.Serial)
		got := 0
		for _, l := range strings.Split(out, "\n") {
			if ctrls, ok := strings.CutPrefix(l, "cgroup controllers delegated:"); ok {
				// The inner containers' cgroups get these (bench-direct
				// checks each one); the agent's get memory and pids too.
				if f := strings.Fields(ctrls); !slices.Contains(f, "memory") || !slices.Contains(f, "pids") {
					b.Fatalf("bench-direct delegated cgroup controllers %q, want memory and pids among them", f)
				}
				if r == 0 {
					b.Logf("bench-direct: %s", l)
				}
			}
			f := strings.Fields(l)
			if len(f) != 6 || f[0] != "run" {
				continue
			}
			var ns [4]time.Duration
			for i := range ns {
				n, err := strconv.ParseInt(f[2+i], 10, 64)
				if err != nil {
					b.Fatalf("bench-direct printed %q: %v", l, err)
				}
				ns[i] = time.Duration(n)
			}
			// Create is libcontainer.Create, start its Run (up to the
			// exec of the container's program), wait the rest.
			direct = append(direct, cycleTimes{create: ns[1], start: ns[2], wait: ns[3]})
			got++
		}
		if got != n {
			b.Fatalf("bench-direct -n %d printed %d runs:\n%s", n, got, out)
		}
	}
	through := median(timed, cycleTimes.total)
	lc := median(direct, cycleTimes.total)
	b.Logf("through the agent, medians: create %v, start %v, wait %v (stdout EOF and exit status), delete %v",
		median(timed, cycleTimes.createTime), median(timed, cycleTimes.startTime), median(timed, cycleTimes.waitTime), median(timed, cycleTimes.deleteTime))
	b.Logf("directly with libcontainer, medians: create %v, run %v, wait %v (exit status and stdout EOF)",
		median(direct, cycleTimes.createTime), median(direct, cycleTimes.startTime), median(direct, cycleTimes.waitTime))
	b.ReportMetric(float64(through.Microseconds())/1000, "agent-median-ms")
	b.ReportMetric(float64(lc.Microseconds())/1000, "direct-median-ms")
	b.ReportMetric(float64(through)/float64(lc), "agent/direct")
	b.Logf("create+start+wait of true, median of %d: through the agent %v, directly with libcontainer %v, ratio %.3f",
		b.N, through, lc, float64(through)/float64(lc))
}

// median returns the median of one phase (or the total) of cycles.
func median(cycles []cycleTimes, phase func(cycleTimes) time.Duration) time.Duration {
	ds := make([]time.Duration, len(cycles))
	for i, c := range cycles {
		ds[i] = phase(c)
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// directCommand is the shell command of the bench-direct container: n
// runs of /bench/true.json on /direct-root, stderr folded into stdout.
func directCommand(n string) string {
	return "exec /bench/libct bench-direct -n " + n + " -spec /bench/true.json -rootfs /direct-root -state /run/bench-direct 2>&1"
}

// directSpec runs the bench-direct helper on the benchmark disk: n runs of
// /bench/true.json on /direct-root. It is privileged as a container runtime
// must be: the capabilities libcontainer needs, no seccomp, no
// no_new_privs, its cgroup (a private cgroup namespace) and /sys writable, a
// tmpfs for libcontainer's state. It keeps the private namespaces the
// policy demands (pid, mount, ipc, uts, cgroup, network); the inner
// containers get their own below them.
func directSpec(n int) *specs.Spec {
	spec := launcher.ContainerSpec(launcher.Process{
		Args: []string{"sh", "-c", directCommand(strconv.Itoa(n))},
		Cwd:  "/", Env: []string{"PATH=/bin"},
	}, "direct")
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN", "CAP_NET_RAW",
		"CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_ADMIN", "CAP_SYS_RESOURCE", "CAP_MKNOD", "CAP_AUDIT_WRITE",
		"CAP_SETFCAP", "CAP_BPF"}
	spec.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
	spec.Process.NoNewPrivileges = false
	spec.Linux.MaskedPaths, spec.Linux.ReadonlyPaths = nil, nil
	for i, m := range spec.Mounts {
		if m.Destination == "/sys/fs/cgroup" || m.Destination == "/sys" {
			spec.Mounts[i].Options = slices.DeleteFunc(slices.Clone(m.Options), func(o string) bool { return o == "ro" })
		}
	}
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/run", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=755"}})
	return spec
}

func benchRoot(b *testing.B) string {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		b.Skip("busybox not installed")
	}
	dir := filepath.Join(b.TempDir(), "rootfs")
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		b.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "bin", "busybox"), data, 0o755)
	for _, app := range []string{"sh", "true"} {
		os.Symlink("busybox", filepath.Join(dir, "bin", app))
	}
	// For bench-direct: the same busybox tree as the root of the directly
	// run containers, the spec of the agent's `true` containers, and an
	// agent built with its test-only bench-direct mode.
	direct := filepath.Join(dir, "direct-root")
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp"} {
		os.MkdirAll(filepath.Join(direct, d), 0o755)
	}
	os.WriteFile(filepath.Join(direct, "bin", "busybox"), data, 0o755)
	os.Symlink("busybox", filepath.Join(direct, "bin", "true"))
	os.MkdirAll(filepath.Join(dir, "bench"), 0o755)
	sj, _ := json.Marshal(launcher.ContainerSpec(launcher.Process{Args: []string{"true"}, Cwd: "/", Env: []string{"PATH=/bin"}}, "bench"))
	if err := os.WriteFile(filepath.Join(dir, "bench", "true.json"), sj, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := guestimage.BuildLibct(context.Background(), repoRoot(), filepath.Join(dir, "bench", "libct"), "benchdirect"); err != nil {
		b.Fatalf("build the bench-direct helper: %v", err)
	}
	return dir
}

// cycleTimes are the phases of one container cycle through the agent.
type cycleTimes struct {
	create, start, wait, delete time.Duration
}

// total is create+start+wait: what a direct libcontainer run is timed for.
func (c cycleTimes) total() time.Duration { return c.create + c.start + c.wait }

func (c cycleTimes) createTime() time.Duration { return c.create }
func (c cycleTimes) startTime() time.Duration  { return c.start }
func (c cycleTimes) waitTime() time.Duration   { return c.wait }
func (c cycleTimes) deleteTime() time.Duration { return c.delete }

// runSpec creates, starts, waits for and deletes one container and
// returns its stdout and how long each step took.
func runSpec(b *testing.B, ctx context.Context, a agentv1.AgentClient, id string, spec *specs.Spec, d image.Disk, serial string) (string, cycleTimes) {
	sj, _ := json.Marshal(spec)
	start := time.Now()
	_, err := a.CreateContainer(ctx, &agentv1.CreateContainerRequest{
		ContainerId: id, SpecJson: sj,
		Rootfs: &agentv1.Rootfs{Source: &agentv1.Rootfs_Block{Block: &agentv1.BlockRootfs{
			Serial: serial, FsType: "erofs", Verity: agentv1.NewVerity(d.Verity),
		}}},
	})
	if err != nil {
		b.Fatalf("CreateContainer(%s): %v", id, err)
	}
	var t cycleTimes
	t.create = time.Since(start)
	ref := &agentv1.ProcessRef{ContainerId: id}
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		_, err := agentv1.CopyOutput(ctx, a, ref, agentv1.OutputStream_OUTPUT_STREAM_STDOUT, &out)
		done <- err
	}()
	start = time.Now()
	if _, err := a.StartContainer(ctx, &agentv1.StartContainerRequest{ContainerId: id}); err != nil {
		b.Fatalf("StartContainer(%s): %v", id, err)
	}
	t.start = time.Since(start)
	start = time.Now()
	if err := <-done; err != nil {
		b.Fatalf("output of %s: %v", id, err)
	}
	w, err := a.WaitProcess(ctx, &agentv1.WaitProcessRequest{Process: ref})
	t.wait = time.Since(start)
	if err != nil || w.GetExitCode() != 0 {
		b.Fatalf("WaitProcess(%s) = %v, %v; stdout:\n%s", id, w, err, out.String())
	}
	start = time.Now()
	if _, err := a.DeleteContainer(ctx, &agentv1.DeleteContainerRequest{ContainerId: id}); err != nil {
		b.Fatalf("DeleteContainer(%s): %v", id, err)
	}
	t.delete = time.Since(start)
	return out.String(), t
}
