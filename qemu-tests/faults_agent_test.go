package qemutests

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"confguest/build/guestimage"
)

// crashMarker is agent/output.CrashMarker, defined only in the faultinject build.
const crashMarker = "confguest-faultinject: crash the agent"

// TestFaultAgentCrash crashes the agent in the middle of an output stream: it boots the
// image's kernel and PID 1 with an agent built with the faultinject tag (agent/output: an
// unrecovered panic in the goroutine draining a container's output when the container
// writes crashMarker), on a dm-verity root of its own, and runs a container that streams
// and then writes the marker. PID 1 must name how the agent ended and power off; confguest
// run must fail with exit 1 and say that the guest powered off because the agent panicked, within
// faultExitBound of the crash, and leave no process and no file behind. The published
// image's agent must not contain the hook.
func TestFaultAgentCrash(t *testing.T) {
	e := newCLIEnv(t)
	published, err := os.ReadFile(filepath.Join(e.image, "rootfs.img"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(published, []byte(crashMarker)) {
		t.Fatalf("%s holds the faultinject marker %q: the image's agent was built with the faultinject tag", filepath.Join(e.image, "rootfs.img"), crashMarker)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	variant := t.TempDir()
	if err := guestimage.AgentVariant(ctx, repoRoot(), e.image, variant, "faultinject"); err != nil {
		t.Fatalf("build the faultinject image: %v", err)
	}
	// The check above finds the marker where it is (erofs keeps file data as is).
	if b, err := os.ReadFile(filepath.Join(variant, "rootfs.img")); err != nil || !bytes.Contains(b, []byte(crashMarker)) {
		t.Fatalf("the faultinject image's rootfs.img does not hold the marker (%v): the published image's check above proves nothing", err)
	}
	e.image = variant

	script := "echo streaming; echo streaming; sleep 2; echo '" + crashMarker + "'; sleep 600"
	args := append(append([]string{"run"}, e.launchFlags()...), "--rootfs", e.rootfs, "--", "sh", "-c", script)
	c := e.command(ctx, args...)
	stdout := &watchBuffer{want: "streaming\nstreaming\n", hit: make(chan struct{})}
	var stderr bytes.Buffer
	c.Stdout, c.Stderr = stdout, &stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { c.Wait(); close(exited) }()
	var streamed time.Time
	select {
	case <-stdout.hit:
		streamed = time.Now()
	case <-exited:
	}
	<-exited
	code := c.ProcessState.ExitCode()
	if streamed.IsZero() {
		t.Fatalf("confguest run exited %d before the container streamed\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	// The container writes the marker 2 s after it streamed.
	took := time.Since(streamed) - 2*time.Second
	t.Logf("confguest run exited %d, %v after the crash:\n%s", code, took.Round(time.Millisecond), lastLines(stderr.String(), 12))
	if strings.Contains(stdout.String(), crashMarker) {
		t.Errorf("stdout holds the marker: the agent forwarded it instead of crashing")
	}
	if code != 1 {
		t.Errorf("confguest run after the agent crashed: exit %d, want 1\nstderr:\n%s", code, stderr.String())
	}
	// PID 1 names the agent's end and powers off; the launcher puts that in its error.
	want := "VMM exited: the guest powered off: agent: exited with status 2 (panic: faultinject: " + crashMarker + ")"
	if !strings.Contains(stderr.String(), want) {
		t.Errorf("confguest run's stderr lacks %q\nstderr:\n%s", want, stderr.String())
	}
	if took > faultExitBound {
		t.Errorf("confguest run took %v to exit after the agent crashed, want at most %v", took, faultExitBound)
	}
	e.checkNoLeftovers()
}
