package qemutests

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"confguest/agent/api/policy"
	"confguest/hostside/launcher"
	"confguest/hostside/vmm"
)

// TestFaultKill kills the guest's host processes (QEMU, vhost-device-vsock) with SIGKILL
// at the worst moments of confguest run: the run must fail with exit 1, name the process
// that died, return within faultExitBound of the kill, and leave no process and no file
// behind.
func TestFaultKill(t *testing.T) {
	e := newCLIEnv(t)
	const (
		qemu  = "qemu-system"
		vhost = "vhost-device-vsock"
	)
	stream := []string{"sh", "-c", "while :; do echo streaming; done"}
	for _, tc := range []struct {
		name   string
		victim string   // in the command line of the process to kill
		cmd    []string // the container's command
		// The kill follows the first appearance of trigger in where.
		where   faultWatch
		trigger string
		want    []string // in stderr
	}{
		{"qemu at boot start", qemu, []string{"true"}, onStderr, "waiting for the agent",
			[]string{"VMM exited during boot", "qemu-system-x86_64: signal: killed"}},
		// The kernel runs, PID 1 verified the root; the agent is not up yet.
		{"qemu during boot", qemu, []string{"true"}, onConsole, "confguest-init: root verified",
			[]string{"VMM exited during boot", "qemu-system-x86_64: signal: killed", "last lines of the guest console:\n  "}},
		// The policy is the last call before CreateContainer.
		{"qemu during container create", qemu, []string{"true"}, onStderr, "installed (",
			[]string{"VMM exited", "qemu-system-x86_64: signal: killed", "create container ctr: "}},
		{"qemu during output streaming", qemu, stream, onStdout, "streaming\nstreaming\n",
			[]string{"VMM exited", "qemu-system-x86_64: signal: killed"}},
		{"qemu with an idle container", qemu, []string{"sleep", "1000"}, onStderr, "container ctr started",
			[]string{"VMM exited", "qemu-system-x86_64: signal: killed"}},
		{"vhost-device-vsock during output streaming", vhost, stream, onStdout, "streaming\nstreaming\n",
			[]string{"VMM exited", "vhost-device-vsock exited (signal: killed), stopping the VM"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, took := e.killDuring(t, tc.victim, tc.where, tc.trigger, tc.cmd)
			skipUnimplemented(t, r)
			if r.code != 1 {
				t.Errorf("confguest run, %s: exit %d, want 1\nstderr:\n%s", tc.name, r.code, r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("confguest run, %s: stderr lacks %q\nstderr:\n%s", tc.name, w, r.stderr)
				}
			}
			if took > faultExitBound {
				t.Errorf("confguest run took %v to exit after the kill, want at most %v", took, faultExitBound)
			}
			t.Logf("exited %v after the kill:\n%s", took.Round(time.Millisecond), lastLines(r.stderr, 6))
			e.checkNoLeftovers()
		})
	}
}

// faultWatch is where TestFaultKill watches for the moment to kill.
type faultWatch int

const (
	onStderr  faultWatch = iota // confguest's progress lines
	onStdout                    // the container's output
	onConsole                   // the guest's console log
)

// consolePathRE finds the console log in confguest's progress line.
var consolePathRE = regexp.MustCompile(`\(console: (\S+)\)`)

// faultExitBound is how long confguest may take to exit once a process it needs died: a
// hang check, not a benchmark.
const faultExitBound = 30 * time.Second

// killDuring runs the container command cmd with confguest run, finds the guest's host
// process whose command line contains victim once the launcher waits for the agent, and
// SIGKILLs it as soon as trigger appears in where. It
// returns the result and how long confguest took to exit after the kill.
func (e *cliEnv) killDuring(t *testing.T, victim string, where faultWatch, trigger string, cmd []string) (cliResult, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	args := append(append(append([]string{"run"}, e.launchFlags()...), "--rootfs", e.rootfs, "--"), cmd...)
	c := e.command(ctx, args...)
	stdout := &watchBuffer{want: trigger, hit: make(chan struct{})}
	stderr := &watchBuffer{want: trigger, hit: make(chan struct{})}
	c.Stdout, c.Stderr = stdout, stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	result := func() cliResult {
		err := c.Wait()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		return cliResult{stdout.String(), stderr.String(), code}
	}
	// wait polls (a few milliseconds late at most) until text shows s.
	wait := func(text func() string, s string) {
		deadline := time.Now().Add(3 * time.Minute)
		for !strings.Contains(text(), s) {
			if time.Now().After(deadline) {
				c.Process.Kill()
				r := result()
				t.Fatalf("confguest never printed %q\nstdout:\n%.2000s\nstderr:\n%s", s, r.stdout, r.stderr)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	wait(stderr.String, "waiting for the agent")
	pid := 0
	for _, p := range procsMentioning(e.runDir) {
		if strings.Contains(p, victim) {
			fmt.Sscanf(p, "%d:", &pid)
		}
	}
	if pid == 0 {
		c.Process.Kill()
		t.Fatalf("no process mentioning %q runs for the guest; processes: %q", victim, procsMentioning(e.runDir))
	}
	switch where {
	case onStdout:
		wait(stdout.String, trigger)
	case onStderr:
		wait(stderr.String, trigger)
	case onConsole:
		console := consolePathRE.FindStringSubmatch(stderr.String())
		if console == nil {
			c.Process.Kill()
			t.Fatalf("confguest named no console log; stderr:\n%s", result().stderr)
		}
		wait(func() string { b, _ := os.ReadFile(console[1]); return string(b) }, trigger)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		c.Process.Kill()
		t.Fatalf("kill %s (pid %d): %v", victim, pid, err)
	}
	killed := time.Now()
	r := result()
	return r, time.Since(killed)
}

// TestFaultInGuest runs containers that fail inside one guest: one killed by the kernel
// for passing its memory limit, one that fills its scratch space, one whose layer's disk
// image the host corrupts while it runs. Each must fail exactly as the protection says,
// and the guest must go on serving a bystander container.
func TestFaultInGuest(t *testing.T) {
	img := needImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	sb := newSandbox(ctx, t, img, 512)
	disk := busyboxDisk(ctx, t, sb, "awk", "dd")
	blob := faultBlob()
	victimRoot := busyboxRoot(t)
	if err := os.WriteFile(filepath.Join(victimRoot, "blob"), blob, 0o644); err != nil {
		t.Fatal(err)
	}
	victim := dirDisk(ctx, t, sb, victimRoot)

	proc := func(args ...string) launcher.Process {
		return launcher.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin"}}
	}
	bystander := proc("sleep", "100000")
	alive := proc("sh", "-c", "echo alive")
	// Without a limit it prints 67108864 and exits 0; the guest has memory for that.
	hog := proc("awk", `BEGIN { s = "x"; while (length(s) < 67108864) s = s s; print length(s) }`)
	hogSpec := launcher.ContainerSpec(hog, "hog")
	hogSpec.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptrTo(int64(16 << 20))}}
	fill := proc("dd", "if=/dev/zero", "of=/fill", "bs=1M")
	reader := proc("cat", "/blob")

	entry := func(id string, d launcher.Disk, s *specs.Spec, execs ...launcher.Process) policy.Container {
		c := launcher.PolicyEntry(id, d.Verity.RootHash, s)
		for _, p := range execs {
			c.Exec = append(c.Exec, launcher.ExecRule(p))
		}
		return c
	}
	g := bootUnderPolicy(ctx, t, sb, policy.Policy{Version: policy.Version, Agent: policy.AgentRules{Stats: true, Shutdown: true},
		Containers: []policy.Container{
			entry("bystander", disk, launcher.ContainerSpec(bystander, "bystander"), alive),
			entry("hog", disk, hogSpec),
			entry("fill", disk, launcher.ContainerSpec(fill, "fill")),
			entry("reader", victim, launcher.ContainerSpec(bystander, "reader"), reader),
		}})
	if err := g.StartContainer(ctx, "bystander", disk, bystander); err != nil {
		t.Fatalf("start the bystander container: %v", err)
	}
	bystanderServes := func(t *testing.T) {
		t.Helper()
		var out bytes.Buffer
		code, err := g.Exec(ctx, "bystander", "alive-"+t.Name()[strings.LastIndexByte(t.Name(), '/')+1:], alive, launcher.IO{Stdout: &out})
		if err != nil || code != 0 || out.String() != "alive\n" {
			t.Errorf("exec in the bystander container = %q, exit %d, %v; want \"alive\\n\", 0", out.String(), code, err)
		}
		if _, err := g.Stats(ctx, ""); err != nil {
			t.Errorf("agent Stats: %v", err)
		}
	}

	t.Run("oom", func(t *testing.T) {
		if _, err := g.CreateContainer(ctx, "hog", disk, hogSpec, launcher.Stdio{}); err != nil {
			t.Fatal(err)
		}
		defer g.Delete(context.WithoutCancel(ctx), "hog")
		var out bytes.Buffer
		st := g.Stream(ctx, launcher.ProcessRef{ContainerID: "hog"}, launcher.IO{Stdout: &out})
		if err := g.Start(ctx, "hog"); err != nil {
			t.Fatal(err)
		}
		e, err := g.Wait(ctx, launcher.ProcessRef{ContainerID: "hog"})
		st.Drain(ctx, time.Second)
		if err != nil || e.Code != 137 || out.Len() != 0 {
			t.Errorf("a container allocating beyond its 16 MiB limit: exit %d, output %q, %v; want 137 (SIGKILL by the OOM killer) and no output", e.Code, out.String(), err)
		}
		bystanderServes(t)
	})

	t.Run("scratch full", func(t *testing.T) {
		var errOut bytes.Buffer
		code, err := g.RunContainer(ctx, "fill", disk, fill, launcher.IO{Stderr: &errOut})
		if err != nil || code != 1 || !strings.Contains(errOut.String(), "No space left on device") {
			t.Errorf("a container writing until its scratch space is full: exit %d, stderr %q, %v; want 1 and ENOSPC", code, errOut.String(), err)
		}
		t.Logf("dd: %s", strings.TrimSpace(errOut.String()))
		bystanderServes(t)
	})

	t.Run("layer corrupted", func(t *testing.T) {
		if err := g.StartContainer(ctx, "reader", victim, bystander); err != nil {
			t.Fatal(err)
		}
		defer g.Delete(context.WithoutCancel(ctx), "reader")
		at := corruptBlock(t, victim.Path, blob, len(blob)/2)
		var out, errOut bytes.Buffer
		code, err := g.Exec(ctx, "reader", "cat", reader, launcher.IO{Stdout: &out, Stderr: &errOut})
		if err != nil || code != 1 || !eioRE.MatchString(errOut.String()) {
			t.Errorf("cat of a file whose block the host overwrote: exit %d, stderr %q, %v; want 1 and an I/O error", code, errOut.String(), err)
		}
		if !bytes.HasPrefix(blob, out.Bytes()) || out.Len() > at {
			t.Errorf("cat read %d bytes that are not the first %d of the file as built: unverified data reached the container", out.Len(), at)
		}
		t.Logf("cat read %d of %d bytes, the corrupted block starts at %d; stderr %q", out.Len(), len(blob), at, strings.TrimSpace(errOut.String()))
		line := waitConsole(t, filepath.Join(g.Dir(), vmm.ConsoleLog), verityErrRE, 10*time.Second)
		if line == "" {
			t.Errorf("the guest console shows no dm-verity corruption line: the host cannot see the corruption")
		}
		t.Logf("console: %s", line)
		bystanderServes(t)
	})
}

// eioRE matches strerror(EIO) of glibc and musl.
var eioRE = regexp.MustCompile(`(Input/output|I/O) error`)

// verityErrRE matches the kernel's line for a block that failed verification.
var verityErrRE = regexp.MustCompile(`device-mapper: verity: .*(data|metadata) block [0-9]+ is corrupted`)

// faultBlob is 1 MiB of pseudo-random bytes: each of its blocks occurs once in a disk image.
func faultBlob() []byte {
	b := make([]byte, 1<<20)
	rand.New(rand.NewSource(21)).Read(b)
	return b
}

// corruptBlock overwrites, in the disk image at path, the 4 KiB block that holds
// blob[off:off+4096], and returns off. The VMM has the image open; it reads what the host
// wrote.
func corruptBlock(t *testing.T, path string, blob []byte, off int) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block := blob[off : off+4096]
	at := bytes.Index(data, block)
	if at < 0 || bytes.Index(data[at+1:], block) >= 0 {
		t.Fatalf("%s: the file's block at %d is not stored exactly once (compressed or inline?)", path, off)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(bytes.Repeat([]byte("corrupted by the host "), 4096/22+1)[:4096], int64(at)); err != nil {
		t.Fatalf("corrupt %s: %v", path, err)
	}
	return off
}

// waitConsole returns the first console line matching re, waiting up to max for it.
func waitConsole(t *testing.T, path string, re *regexp.Regexp, max time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(max)
	for {
		b, _ := os.ReadFile(path)
		if m := re.Find(b); m != nil {
			return string(m)
		}
		if time.Now().After(deadline) {
			return ""
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func ptrTo[T any](v T) *T { return &v }

// TestFaultVsockEarlyConnect sends CONNECTs to the guest's agent port from the moment the VM
// starts, before the guest's vsock driver is up, as a careless client would. That can stop
// vhost-device-vsock from serving the guest for good (its worker thread ends; CONNECTs are
// then taken and never answered: the wedge the launcher boots again for). Whatever the
// backend does, an agent that listens must either answer or the stall must be diagnosed
// (vmm.VsockStalled), never a silent wait.
func TestFaultVsockEarlyConnect(t *testing.T) {
	img := needImage(t)
	dir, err := os.MkdirTemp("", "cgv")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	vm, err := vmm.StartQEMU(ctx, vmm.Config{
		Kernel: img.Kernel, Initramfs: img.Initrd, Cmdline: img.Cmdline + " confguest.tee=none",
		MemoryMiB: 256, RunDir: dir, Disks: []vmm.Disk{{Path: img.RootFS, Serial: "rootfs", ReadOnly: true}},
	}, vmm.WithAccel(vmm.AccelTCG), vmm.WithVhostDeviceVsock(vhostDeviceVsock(t)))
	if err != nil {
		t.Fatalf("StartQEMU: %v", err)
	}
	defer vm.Stop(context.Background())
	// One bare attempt each time, as a client without backoff would make them.
	connect := func() error {
		c, err := net.DialTimeout("unix", vm.VsockPath(), time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := fmt.Fprintf(c, "CONNECT %d\n", launcher.AgentPort); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "OK ") {
			return fmt.Errorf("reply %q", line)
		}
		return nil
	}
	var ready time.Time
	attempts := 0
	for {
		attempts++
		err := connect()
		if ready.IsZero() && strings.Contains(strings.Join(vm.ConsoleTail(30), "\n"), markerReady) {
			ready = time.Now()
		}
		switch {
		case err == nil && !ready.IsZero():
			t.Logf("CONNECT %d answered after the agent's ready line: the backend kept serving", attempts)
			return
		case !ready.IsZero() && time.Since(ready) > 10*time.Second:
			serr := vmm.VsockStalled(vm)
			if !errors.Is(serr, vmm.ErrVsockStalled) {
				t.Fatalf("no CONNECT answered for 10s after the agent's ready line, and VsockStalled = %v: the wedge went undiagnosed\nlast error: %v", serr, err)
			}
			t.Logf("reproduced after %d CONNECTs: %v", attempts, serr)
			return
		case ctx.Err() != nil:
			t.Fatalf("the agent never printed its ready line; console:\n%s", strings.Join(vm.ConsoleTail(20), "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
