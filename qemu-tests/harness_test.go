package qemutests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"confguest/hostside/vmm"
)

// Console markers the guest prints.
const (
	markerReady    = "confguest-agent: ready"
	markerVerified = "confguest-init: root verified "
	markerFatal    = "confguest-init: fatal: "
	markerPowerOff = "confguest-init: powering off"
	markerPanic    = "Kernel panic"
)

// Image is a built guest image.
type Image struct {
	Dir     string
	Kernel  string
	Initrd  string
	RootFS  string
	Cmdline string // contents of out/cmdline, trimmed
}

// Options boots the image as built, without SEV-SNP (confguest.tee=none).
func (img Image) Options() BootOptions {
	return BootOptions{
		Kernel:   img.Kernel,
		Initrd:   img.Initrd,
		Cmdline:  img.Cmdline + " confguest.tee=none",
		RootDisk: img.RootFS,
	}
}

// missing skips the test, or fails it under CI=true.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: boot tests must run)", msg)
	}
	t.Skip(msg)
}

// repoRoot finds the module root from the test's working directory.
func repoRoot() string {
	dir, _ := os.Getwd()
	for d := dir; d != filepath.Dir(d); d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	return dir
}

// qemuBinary is the QEMU the tests run.
func qemuBinary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		missing(t, "qemu-system-x86_64 not found: install qemu-system-x86 (build/setup.sh)")
	}
	return p
}

// needImage returns the image under test, skipping (or failing with
// CI=true) when it or QEMU is missing.
func needImage(t testing.TB) Image {
	t.Helper()
	qemuBinary(t)
	dir := os.Getenv("CONFGUEST_IMAGE")
	if dir == "" {
		dir = filepath.Join(repoRoot(), "out")
	}
	img := Image{
		Dir:    dir,
		Kernel: filepath.Join(dir, "bzImage"),
		Initrd: filepath.Join(dir, "initramfs.cpio.gz"),
		RootFS: filepath.Join(dir, "rootfs.img"),
	}
	for _, f := range []string{img.Kernel, img.Initrd, img.RootFS, filepath.Join(dir, "cmdline")} {
		if _, err := os.Stat(f); err != nil {
			missing(t, "guest image incomplete: %v: run make image or set CONFGUEST_IMAGE", err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	img.Cmdline = strings.TrimSpace(string(b))
	return img
}

// BootOptions describe one QEMU boot.
type BootOptions struct {
	Kernel, Initrd string
	Cmdline        string
	// RootDisk is attached as the first virtio-blk disk (/dev/vda), read-only;
	// empty attaches none.
	RootDisk string
	// Disks are further virtio-blk disks, read-only.
	Disks []string
	// Memory defaults to 128M.
	Memory string
	// Timeout bounds the whole boot; default 3 minutes (TCG on a shared CPU).
	Timeout time.Duration
	// Extra QEMU arguments.
	Extra []string
}

// Result is how a boot ended.
type Result struct {
	Console  string
	ExitCode int  // QEMU's exit status; -1 if it was killed
	Exited   bool // QEMU exited by itself (the guest powered off)
	Elapsed  time.Duration
}

// Guest is a running QEMU.
type Guest struct {
	t       testing.TB
	cmd     *exec.Cmd
	qmpPath string
	start   time.Time
	timeout time.Duration

	mu      sync.Mutex
	console bytes.Buffer
	changed chan struct{} // closed and replaced on console output
	done    chan struct{} // closed when QEMU has exited
	exitErr error
}

// qemuArgs builds QEMU's command line for opts.
func qemuArgs(opts BootOptions, qmp string) []string {
	mem := opts.Memory
	if mem == "" {
		mem = "128M"
	}
	args := []string{
		"-accel", "tcg", "-m", mem, "-smp", "1",
		"-nodefaults", "-no-reboot", "-display", "none", "-no-user-config",
		"-serial", "stdio", "-monitor", "none",
		"-kernel", opts.Kernel, "-initrd", opts.Initrd, "-append", opts.Cmdline,
	}
	if qmp != "" {
		args = append(args, "-qmp", "unix:"+qmp+",server=on,wait=off")
	}
	disks := opts.Disks
	if opts.RootDisk != "" {
		disks = append([]string{opts.RootDisk}, disks...)
	}
	for _, d := range disks {
		args = append(args, "-drive", "file="+d+",if=virtio,format=raw,readonly=on")
	}
	return append(args, opts.Extra...)
}

// startGuest starts QEMU and returns at once; t's cleanup kills it.
func startGuest(t testing.TB, opts BootOptions) *Guest {
	t.Helper()
	bin := qemuBinary(t)
	qmp := filepath.Join(t.TempDir(), "qmp.sock")
	if len(qmp) > 100 { // unix socket paths are short
		dir, err := os.MkdirTemp("", "qmp")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		qmp = filepath.Join(dir, "qmp.sock")
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = 3 * time.Minute
	}
	g := &Guest{t: t, qmpPath: qmp, timeout: timeout, changed: make(chan struct{}), done: make(chan struct{})}
	g.cmd = exec.Command(bin, qemuArgs(opts, qmp)...)
	g.cmd.Stdin = nil
	g.cmd.Stderr = g // QEMU's own complaints go into the transcript too
	out, err := g.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	g.start = time.Now()
	if err := g.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		r := bufio.NewReader(out)
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				g.Write(buf[:n])
			}
			if err != nil {
				break
			}
		}
		g.exitErr = g.cmd.Wait()
		close(g.done)
		g.mu.Lock()
		close(g.changed)
		g.changed = make(chan struct{})
		g.mu.Unlock()
	}()
	t.Cleanup(func() {
		select {
		case <-g.done:
		default:
			g.cmd.Process.Kill()
			<-g.done
		}
		if t.Failed() {
			t.Logf("guest console:\n%s", g.Console())
		}
	})
	return g
}

// Write appends console output.
func (g *Guest) Write(b []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.console.Write(b)
	close(g.changed)
	g.changed = make(chan struct{})
	return len(b), nil
}

// Console is everything the guest printed so far.
func (g *Guest) Console() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return strings.ReplaceAll(g.console.String(), "\r\n", "\n")
}

// WaitFor waits until the console contains s. It fails when QEMU exits,
// the boot times out or ctx ends first.
func (g *Guest) WaitFor(ctx context.Context, s string) (time.Duration, error) {
	timer := time.NewTimer(g.timeout - time.Since(g.start))
	defer timer.Stop()
	for {
		g.mu.Lock()
		found := strings.Contains(strings.ReplaceAll(g.console.String(), "\r\n", "\n"), s)
		changed := g.changed
		g.mu.Unlock()
		if found {
			return time.Since(g.start), nil
		}
		select {
		case <-g.done:
			if strings.Contains(g.Console(), s) {
				return time.Since(g.start), nil
			}
			return 0, fmt.Errorf("QEMU exited (%v) before the console showed %q", g.exitErr, s)
		case <-timer.C:
			return 0, fmt.Errorf("console did not show %q within %v", s, g.timeout)
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-changed:
		}
	}
}

// QMP runs one QMP command (no arguments) and returns its reply, waiting up to 5 s for
// QEMU to open its QMP socket.
func (g *Guest) QMP(command string) (json.RawMessage, error) {
	var err error
	for i := 0; i < 50; i++ {
		var ret json.RawMessage
		ret, err = vmm.QMPExecute(context.Background(), g.qmpPath, command, nil)
		if !errors.Is(err, vmm.ErrNotRunning) && !errors.Is(err, syscall.ECONNREFUSED) {
			return ret, err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, err
}

// Wait waits for QEMU to exit by itself and reports how. If the boot
// timeout passes first, QEMU is killed and Exited is false.
func (g *Guest) Wait(ctx context.Context) Result {
	timer := time.NewTimer(g.timeout - time.Since(g.start))
	defer timer.Stop()
	exited := true
	select {
	case <-g.done:
	case <-timer.C:
		exited = false
	case <-ctx.Done():
		exited = false
	}
	if !exited {
		g.cmd.Process.Kill()
		<-g.done
	}
	code := -1
	if g.cmd.ProcessState != nil && exited {
		code = g.cmd.ProcessState.ExitCode()
	}
	return Result{Console: g.Console(), ExitCode: code, Exited: exited, Elapsed: time.Since(g.start)}
}

// bootGuest boots opts and waits until QEMU exits by itself (the guest
// powered off) or the timeout kills it.
func bootGuest(t testing.TB, opts BootOptions) Result {
	t.Helper()
	return startGuest(t, opts).Wait(context.Background())
}

// fatalLine returns the first "confguest-init: fatal: " line, or "".
func fatalLine(console string) string {
	for _, l := range strings.Split(console, "\n") {
		if i := strings.Index(l, markerFatal); i >= 0 {
			return strings.TrimSpace(l[i:])
		}
	}
	return ""
}

// countLines counts console lines containing s.
func countLines(console, s string) int {
	n := 0
	for _, l := range strings.Split(console, "\n") {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}
