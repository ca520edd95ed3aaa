package qemutests

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	agentv1 "confguest/agent/api/v1"
	"confguest/hostside/image"
	"confguest/hostside/launcher"
	"confguest/hostside/vmm"
)

// TestAgentInGuest drives the agent API directly over vsock in the real
// guest: a busybox container from an erofs+verity disk, exec into it, a
// SIGTERM'd process reports the signal, 100 MiB of stdout arrive with the
// producer's SHA-256, and a TTY exec round-trips a line.
func TestAgentInGuest(t *testing.T) {
	img := needImage(t)
	vhost := vhostDeviceVsock(t)
	root := busyboxRoot(t)
	for _, app := range []string{"head", "yes", "sha256sum", "read", "stty"} {
		os.Symlink("busybox", filepath.Join(root, "bin", app))
	}
	if _, err := exec.LookPath("mkfs.erofs"); err != nil {
		missing(t, "mkfs.erofs not found: install erofs-utils (build/setup.sh)")
	}
	base, err := os.MkdirTemp("", "cga")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	sb, err := launcher.New(ctx, launcher.Options{
		ImageDir: img.Dir, Accel: vmm.AccelTCG, MemoryMiB: 512, RunBase: base,
		QEMU: []vmm.QEMUOption{vmm.WithVhostDeviceVsock(vhost)},
	})
	if err != nil {
		t.Fatalf("launcher.New: %v", err)
	}
	defer sb.Close(context.Background())
	disk, serial, err := sb.BuildDisk(ctx, image.Source{Kind: image.Dir, Ref: root})
	if err != nil {
		t.Fatalf("BuildDisk: %v", err)
	}
	if err := sb.Boot(ctx); err != nil {
		t.Fatalf("Boot: %v", err)
	}
	a := sb.Agent

	const id = "svc"
	if err := sb.CreateContainer(ctx, id, disk, serial, launcher.Process{Args: []string{"sleep", "1000"}, Cwd: "/", Env: []string{"PATH=/bin"}}); err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if _, err := a.StartContainer(ctx, &agentv1.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	exec := func(t *testing.T, execID string, terminal, stdin bool, args ...string) *agentv1.ProcessRef {
		t.Helper()
		p, _ := json.Marshal(specs.Process{Terminal: terminal, Args: args, Cwd: "/", Env: []string{"PATH=/bin"}})
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
	if _, err := a.DeleteContainer(ctx, &agentv1.DeleteContainerRequest{ContainerId: id}); err != nil {
		t.Errorf("DeleteContainer: %v", err)
	}
	// A second container from the same disk works after the delete (the
	// verity device and mounts of the first are gone).
	if _, err := sb.RunContainer(ctx, "again", disk, serial, launcher.Process{Args: []string{"true"}, Cwd: "/", Env: []string{"PATH=/bin"}}, launcher.IO{}); err != nil {
		t.Errorf("RunContainer after delete: %v", err)
	}
}

// BenchmarkAgentInGuest measures, in the real guest (TCG here), one
// create/start/wait/delete cycle of `true` from a verity disk through the
// agent, and the agent's resident memory idle and after the b.N cycles
// (read from /proc/<agent>/status by a container that shares the guest's
// PID namespace).
//
//	go test -run '^$' -bench BenchmarkAgentInGuest -benchtime 100x ./qemu-tests
func BenchmarkAgentInGuest(b *testing.B) {
	img := needImage(b)
	vhost, err := exec.LookPath("vhost-device-vsock")
	if err != nil {
		out, err := exec.Command("bash", filepath.Join(repoRoot(), "build", "debpin.sh"), "vhost-device-vsock").Output()
		if err != nil {
			missing(b, "vhost-device-vsock unavailable (build/debpin.sh vhost-device-vsock: %v)", err)
		}
		vhost = filepath.Join(strings.TrimSpace(string(out)), "usr", "bin", "vhost-device-vsock")
	}
	root := benchRoot(b)
	base, err := os.MkdirTemp("", "cgb")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(base)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	sb, err := launcher.New(ctx, launcher.Options{
		ImageDir: img.Dir, Accel: vmm.AccelTCG, MemoryMiB: 512, RunBase: base,
		QEMU: []vmm.QEMUOption{vmm.WithVhostDeviceVsock(vhost)},
	})
	if err != nil {
		b.Fatalf("launcher.New: %v", err)
	}
	defer sb.Close(context.Background())
	disk, serial, err := sb.BuildDisk(ctx, image.Source{Kind: image.Dir, Ref: root})
	if err != nil {
		b.Fatalf("BuildDisk: %v", err)
	}
	if err := sb.Boot(ctx); err != nil {
		b.Fatalf("Boot: %v", err)
	}
	a := sb.Agent
	path := []string{"PATH=/bin"}
	rss := func(name string) float64 {
		spec := launcher.ContainerSpec(launcher.Process{Args: []string{"sh", "-c", `grep -E "^(VmRSS|RssAnon):" /proc/$(pidof agent)/status`}, Cwd: "/", Env: path}, "probe")
		var ns []specs.LinuxNamespace
		for _, n := range spec.Linux.Namespaces {
			if n.Type != specs.PIDNamespace {
				ns = append(ns, n)
			}
		}
		spec.Linux.Namespaces = ns
		out := runSpec(b, ctx, a, "probe-"+name, spec, disk, serial)
		var rss, anon float64
		for _, l := range strings.Split(out, "\n") {
			f := strings.Fields(l)
			if len(f) == 3 {
				v, _ := strconv.ParseFloat(f[1], 64)
				switch f[0] {
				case "VmRSS:":
					rss = v / 1024
				case "RssAnon:":
					anon = v / 1024
				}
			}
		}
		if rss == 0 {
			b.Fatalf("no VmRSS in %q", out)
		}
		b.ReportMetric(anon, name+"-anon-MiB")
		return rss
	}
	time.Sleep(2 * time.Second)
	idle := rss("idle")
	spec := launcher.ContainerSpec(launcher.Process{Args: []string{"true"}, Cwd: "/", Env: path}, "bench")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		runSpec(b, ctx, a, "b"+strconv.Itoa(i), spec, disk, serial)
	}
	b.StopTimer()
	time.Sleep(2 * time.Second) // let the agent release memory when idle
	after := rss("after")
	b.ReportMetric(idle, "idle-RSS-MiB")
	b.ReportMetric(after, "after-RSS-MiB")
	b.ReportMetric(100*(after-idle)/idle, "growth-%")
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
	for _, app := range []string{"sh", "true", "grep", "pidof"} {
		os.Symlink("busybox", filepath.Join(dir, "bin", app))
	}
	return dir
}

// runSpec creates, starts, waits for and deletes one container and
// returns its stdout.
func runSpec(b *testing.B, ctx context.Context, a agentv1.AgentClient, id string, spec *specs.Spec, d image.Disk, serial string) string {
	sj, _ := json.Marshal(spec)
	v := d.Verity
	_, err := a.CreateContainer(ctx, &agentv1.CreateContainerRequest{
		ContainerId: id, SpecJson: sj,
		Rootfs: &agentv1.Rootfs{Source: &agentv1.Rootfs_Block{Block: &agentv1.BlockRootfs{
			Serial: serial, FsType: "erofs",
			Verity: &agentv1.Verity{RootHash: v.RootHash, Salt: v.Salt, HashOffset: v.HashOffset, DataBlocks: v.DataBlocks,
				DataBlockSize: v.DataBlockSize, HashBlockSize: v.HashBlockSize, HashAlgorithm: v.Algorithm},
		}}},
	})
	if err != nil {
		b.Fatalf("CreateContainer(%s): %v", id, err)
	}
	ref := &agentv1.ProcessRef{ContainerId: id}
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		_, err := agentv1.CopyOutput(ctx, a, ref, agentv1.OutputStream_OUTPUT_STREAM_STDOUT, &out)
		done <- err
	}()
	if _, err := a.StartContainer(ctx, &agentv1.StartContainerRequest{ContainerId: id}); err != nil {
		b.Fatalf("StartContainer(%s): %v", id, err)
	}
	if err := <-done; err != nil {
		b.Fatalf("output of %s: %v", id, err)
	}
	if w, err := a.WaitProcess(ctx, &agentv1.WaitProcessRequest{Process: ref}); err != nil || w.GetExitCode() != 0 {
		b.Fatalf("WaitProcess(%s) = %v, %v", id, w, err)
	}
	if _, err := a.DeleteContainer(ctx, &agentv1.DeleteContainerRequest{ContainerId: id}); err != nil {
		b.Fatalf("DeleteContainer(%s): %v", id, err)
	}
	return out.String()
}
