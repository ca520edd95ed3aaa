package qemutests

// End-to-end tests of the confguest CLI: the real binary boots the real image under QEMU
// (TCG) with vhost-device-vsock, and runs containers through the agent.

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// hostBinaries holds one build per main package, so each is built once per test run.
var hostBinaries sync.Map // package path -> func() (string, error)

// hostBinary builds the host program of main package pkg (e.g. "./hostside/cmd/confguest")
// once per test run, alone in a folder of its own, and returns its path.
func hostBinary(t *testing.T, pkg string) string {
	t.Helper()
	build, _ := hostBinaries.LoadOrStore(pkg, sync.OnceValues(func() (string, error) {
		dir, err := os.MkdirTemp("", "confguest-bin")
		if err != nil {
			return "", err
		}
		bin := filepath.Join(dir, path.Base(pkg))
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Dir = repoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
		return bin, nil
	}))
	bin, err := build.(func() (string, error))()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// confguestBinary builds hostside/cmd/confguest once per test run.
func confguestBinary(t *testing.T) string {
	return hostBinary(t, "./hostside/cmd/confguest")
}

// vhostDeviceVsock returns the pinned vhost-device-vsock binary.
func vhostDeviceVsock(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("vhost-device-vsock"); err == nil {
		return p
	}
	out, err := exec.Command("bash", filepath.Join(repoRoot(), "build", "debpin.sh"), "vhost-device-vsock").Output()
	if err != nil {
		missing(t, "vhost-device-vsock unavailable (build/debpin.sh vhost-device-vsock: %v)", err)
	}
	p := filepath.Join(strings.TrimSpace(string(out)), "usr", "bin", "vhost-device-vsock")
	if _, err := os.Stat(p); err != nil {
		missing(t, "vhost-device-vsock: %v", err)
	}
	return p
}

// busyboxRoot builds a container rootfs directory from the host's busybox-static.
func busyboxRoot(t *testing.T) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		missing(t, "busybox not found: install busybox-static (build/setup.sh)")
	}
	dir := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, app := range []string{"sh", "cat", "echo", "sleep", "ls", "uname", "true", "false"} {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", app)); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "etc", "hello"), []byte("hello from the image\n"), 0o644)
	return dir
}

// dirImage turns a directory into a one-layer linux/amd64 image.
func dirImage(t *testing.T, dir string) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			link, _ = os.Readlink(p)
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name = rel
		if fi.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Cmd = []string{"cat", "/etc/hello"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// cliEnv is one test's CLI setup: a short run directory (unix socket paths are short).
type cliEnv struct {
	t      *testing.T
	bin    string
	image  string
	vhost  string
	runDir string
	rootfs string
}

func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	img := needImage(t)
	e := &cliEnv{t: t, bin: confguestBinary(t), image: img.Dir, vhost: vhostDeviceVsock(t), rootfs: busyboxRoot(t)}
	dir, err := os.MkdirTemp("", "cgrun")
	if err != nil {
		t.Fatal(err)
	}
	e.runDir = dir
	t.Cleanup(func() { os.RemoveAll(dir) })
	return e
}

// launch flags shared by run and start.
func (e *cliEnv) launchFlags() []string {
	return []string{"--image", e.image, "--accel", "tcg", "--memory", "256M",
		"--run-dir", e.runDir, "--vhost-device-vsock", e.vhost, "--boot-timeout", "150s"}
}

func (e *cliEnv) command(ctx context.Context, args ...string) *exec.Cmd {
	return e.program(ctx, e.bin, args...)
}

// program runs bin (confguest, or a wrapper such as script) in the test's environment.
func (e *cliEnv) program(ctx context.Context, bin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "CONFGUEST_RUN_DIR="+e.runDir)
	return cmd
}

type cliResult struct {
	stdout, stderr string
	code           int
}

// skipUnimplemented skips when the agent in the image does not implement a call the CLI
// made yet (ttrpc's Unimplemented): the host side cannot be tested further against it.
func skipUnimplemented(t *testing.T, r cliResult) {
	t.Helper()
	if r.code != 0 && strings.Contains(r.stderr, "code = Unimplemented") {
		t.Skipf("the agent in this image does not implement a call confguest needs:\n%s", r.stderr)
	}
}

func (e *cliEnv) run(stdin string, args ...string) cliResult {
	e.t.Helper()
	return e.runProgram(e.bin, stdin, args...)
}

func (e *cliEnv) runProgram(bin, stdin string, args ...string) cliResult {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := e.program(ctx, bin, args...)
	var out, errOut bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errOut
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("confguest %q: %v", args, err)
	}
	return cliResult{out.String(), errOut.String(), code}
}

// checkNoLeftovers fails if any process still refers to the run directory or any file
// remains in it.
func (e *cliEnv) checkNoLeftovers() {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var procs []string
	for {
		procs = procsMentioning(e.runDir)
		if len(procs) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, p := range procs {
		e.t.Errorf("leftover process: %s", p)
	}
	ents, _ := os.ReadDir(e.runDir)
	for _, ent := range ents {
		e.t.Errorf("leftover file in the run directory: %s", ent.Name())
	}
}

// procsMentioning lists live processes whose command line contains s.
func procsMentioning(s string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		if ent.Name()[0] < '0' || ent.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil || !bytes.Contains(b, []byte(s)) {
			continue
		}
		if st, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "stat")); err == nil {
			if i := bytes.LastIndexByte(st, ')'); i > 0 && len(st) > i+2 && st[i+2] == 'Z' {
				continue
			}
		}
		out = append(out, ent.Name()+": "+strings.ReplaceAll(string(b), "\x00", " "))
	}
	return out
}

func TestCLIRun(t *testing.T) {
	e := newCLIEnv(t)
	img := dirImage(t, e.rootfs)
	lay := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(lay, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"})); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "busybox.tar")
	tag, _ := name.NewTag("confguest.test/busybox:1")
	if err := tarball.WriteToFile(archive, tag, img); err != nil {
		t.Fatal(err)
	}
	// A registry on the loopback address, served in-process: no real registry is reachable.
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	ref := strings.TrimPrefix(reg.URL, "http://") + "/confguest/busybox:1"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		stdin    string
		wantOut  string
		wantCode int
	}{
		{"registry pull", []string{"--pull", ref, "--", "cat", "/etc/hello"}, "", "hello from the image\n", 0},
		{"output and exit code", []string{"--rootfs", e.rootfs, "--", "sh", "-c", "echo hello; exit 7"}, "", "hello\n", 7},
		{"stdin piped", []string{"-i", "--rootfs", e.rootfs, "--", "cat"}, "hi\n", "hi\n", 0},
		{"oci layout, image cmd", []string{"--oci", lay}, "", "hello from the image\n", 0},
		{"docker archive", []string{"--oci", archive, "--", "cat", "/etc/hello"}, "", "hello from the image\n", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{"run"}, e.launchFlags()...), tc.args...)
			r := e.run(tc.stdin, args...)
			skipUnimplemented(t, r)
			if r.stdout != tc.wantOut || r.code != tc.wantCode {
				t.Errorf("confguest run %q = stdout %q, exit %d; want %q, %d\nstderr:\n%s", tc.args, r.stdout, r.code, tc.wantOut, tc.wantCode, r.stderr)
			}
			e.checkNoLeftovers()
		})
	}
}

func TestCLIStartExecStop(t *testing.T) {
	e := newCLIEnv(t)
	// The generated policy allows exactly this exec; any other is denied by the guest.
	args := append(append([]string{"start", "--name", "svc", "--exec", `["sh","-c","echo in guest; exit 3"]`}, e.launchFlags()...), "--rootfs", e.rootfs, "--", "sh", "-c", "echo started; sleep 1000")
	r := e.run("", args...)
	skipUnimplemented(t, r)
	if r.code != 0 || r.stdout != "svc\n" {
		t.Fatalf("confguest start = %q, exit %d; want \"svc\\n\", 0\nstderr:\n%s", r.stdout, r.code, r.stderr)
	}
	t.Cleanup(func() { e.run("", "stop", "--run-dir", e.runDir, "svc") })
	if r := e.run("", "ps", "--run-dir", e.runDir); r.code != 0 || !strings.Contains(r.stdout, "svc") {
		t.Errorf("confguest ps = %q, exit %d; want svc listed", r.stdout, r.code)
	}
	if r := e.run("", "exec", "--run-dir", e.runDir, "svc", "--", "sh", "-c", "echo in guest; exit 3"); r.code != 3 || r.stdout != "in guest\n" {
		t.Errorf("confguest exec = %q, exit %d; want \"in guest\\n\", 3\nstderr:\n%s", r.stdout, r.code, r.stderr)
	}
	if r := e.run("", "exec", "--run-dir", e.runDir, "svc", "--", "ls"); r.code == 0 || !strings.Contains(r.stderr, "denied") {
		t.Errorf("confguest exec of a command outside the policy = exit %d, stderr %q; want a denial", r.code, r.stderr)
	}
	if r := e.run("", "logs", "--run-dir", e.runDir, "svc"); r.code != 0 || r.stdout != "started\n" {
		t.Errorf("confguest logs = %q, exit %d; want \"started\\n\", 0\nstderr:\n%s", r.stdout, r.code, r.stderr)
	}
	if r := e.run("", "stop", "--run-dir", e.runDir, "svc"); r.code != 0 {
		t.Errorf("confguest stop = exit %d\nstderr:\n%s", r.code, r.stderr)
	}
	if r := e.run("", "ps", "--run-dir", e.runDir); strings.Contains(r.stdout, "svc") {
		t.Errorf("confguest ps after stop = %q, want svc gone", r.stdout)
	}
	e.checkNoLeftovers()
}

// interrupt starts confguest run, waits until stderr shows trigger, sends sig, and
// returns the result.
func (e *cliEnv) interrupt(sig os.Signal, trigger string, args ...string) (cliResult, time.Duration) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := e.command(ctx, args...)
	var out bytes.Buffer
	errOut := &watchBuffer{want: trigger, hit: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &out, errOut
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	select {
	case <-errOut.hit:
	case <-time.After(3 * time.Minute):
		e.t.Errorf("confguest never printed %q; stderr:\n%s", trigger, errOut.String())
	}
	sent := time.Now()
	cmd.Process.Signal(sig)
	err := cmd.Wait()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	}
	return cliResult{out.String(), errOut.String(), code}, time.Since(sent)
}

// watchBuffer collects output and signals once want appears.
type watchBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	hit  chan struct{}
	once sync.Once
}

func (w *watchBuffer) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.hit) })
	}
	return len(b), nil
}

func (w *watchBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestCLIInterrupt(t *testing.T) {
	e := newCLIEnv(t)
	for _, tc := range []struct {
		name, trigger, cmd string
		sig                os.Signal
	}{
		{"SIGINT during boot", "waiting for the agent", "true", syscall.SIGINT},
		{"SIGINT during a running container", "container ctr started", "sleep 1000", syscall.SIGINT},
		{"SIGTERM during a running container", "container ctr started", "sleep 1000", syscall.SIGTERM},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{"run"}, e.launchFlags()...), "--rootfs", e.rootfs, "--", "sh", "-c", tc.cmd)
			r, took := e.interrupt(tc.sig, tc.trigger, args...)
			skipUnimplemented(t, r)
			if r.code != 130 || !strings.Contains(r.stderr, "interrupted") {
				t.Errorf("confguest run, %s: exit %d, want 130 and a note\nstderr:\n%s", tc.name, r.code, r.stderr)
			}
			if took > 30*time.Second {
				t.Errorf("confguest run took %v to exit after the signal", took)
			}
			e.checkNoLeftovers()
		})
	}
}

func TestCLIGuestNeverReady(t *testing.T) {
	e := newCLIEnv(t)
	args := append(append([]string{"run"}, e.launchFlags()...), "--boot-timeout", "1s", "--rootfs", e.rootfs, "--", "true")
	r := e.run("", args...)
	if r.code == 0 || !strings.Contains(r.stderr, "did not answer") {
		t.Errorf("confguest run with a 1s boot timeout: exit %d, want failure saying the guest did not answer\nstderr:\n%s", r.code, r.stderr)
	}
	e.checkNoLeftovers()
}

// TestCLIRunTTY runs a container with a TTY under script(1), which gives confguest a
// terminal of a known size.
func TestCLIRunTTY(t *testing.T) {
	e := newCLIEnv(t)
	if _, err := exec.LookPath("script"); err != nil {
		missing(t, "script(1) not found: install bsdutils")
	}
	inner := append(append([]string{e.bin, "run", "--quiet", "-t", "--env", "GREETING=hi"}, e.launchFlags()...),
		"--rootfs", e.rootfs, "--", "sh", "-c", "tty; echo $GREETING; stty size; exit 5")
	r := e.runProgram("script", "", terminalArgs(inner...)...)
	skipUnimplemented(t, r)
	out := strings.ReplaceAll(r.stdout, "\r", "")
	if r.code != 5 || !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "hi\n") || !strings.Contains(out, "30 100\n") {
		t.Errorf("confguest run -t = %q, exit %d; want a pts, the env value, size 30 100 and exit 5\nstderr:\n%s", out, r.code, r.stderr)
	}
	e.checkNoLeftovers()
}

// TestCLICrashedLauncher kills confguest itself (SIGKILL, no cleanup possible): its VMM
// must die with it, and the next command must find and remove the stale state.
func TestCLICrashedLauncher(t *testing.T) {
	e := newCLIEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	args := append(append([]string{"run"}, e.launchFlags()...), "--rootfs", e.rootfs, "--", "sleep", "1000")
	cmd := e.command(ctx, args...)
	errOut := &watchBuffer{want: "container ctr started", hit: make(chan struct{})}
	cmd.Stderr = errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-errOut.hit:
	case <-time.After(3 * time.Minute):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("confguest never started the container; stderr:\n%s", errOut.String())
	}
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for len(procsMentioning(e.runDir)) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if procs := procsMentioning(e.runDir); len(procs) > 0 {
		t.Errorf("processes outlived the killed launcher: %q", procs)
	}
	if ents, _ := os.ReadDir(e.runDir); len(ents) != 1 {
		t.Errorf("run directory holds %d entries after the crash, want the one stale guest", len(ents))
	}
	if r := e.run("", "ps", "--run-dir", e.runDir); r.code != 0 || strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("confguest ps after a crash = %q, exit %d; want only the header", r.stdout, r.code)
	}
	e.checkNoLeftovers()
}
