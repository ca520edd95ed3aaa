package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"

	agentv1 "confguest/agent/api/v1"
	"confguest/agent/api/v1/outputtest"
	"confguest/agent/container"
)

// 100 MiB of stdout arrive intact: the SHA-256 the container computes over
// what it writes equals the SHA-256 of what the reader receives.
func TestLargeOutputIntact(t *testing.T) {
	size := "100"
	if testing.Short() {
		size = "8"
	}
	ta := startAgent(t, nil, container.Config{})
	ta.create(t, "big", writableSpec(t, "sh", "-c",
		"head -c "+size+"m /dev/urandom > /tmp/blob && sha256sum /tmp/blob >&2 && cat /tmp/blob"), nil)
	stderr := ta.readOutput(t, "big", "", agentv1.OutputStream_OUTPUT_STREAM_STDERR)
	h := sha256.New()
	var n int64
	done := make(chan error, 1)
	go func() {
		d, err := agentv1.CopyOutput(ctx(t), ta.client, &agentv1.ProcessRef{ContainerId: "big"}, agentv1.OutputStream_OUTPUT_STREAM_STDOUT, writerFunc(func(p []byte) (int, error) {
			n += int64(len(p))
			return h.Write(p)
		}))
		if err == nil && d != 0 {
			t.Errorf("CopyOutput dropped %d bytes with the reader attached", d)
		}
		done <- err
	}()
	if _, err := ta.client.StartContainer(ctx(t), &agentv1.StartContainerRequest{ContainerId: "big"}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("CopyOutput = %v", err)
	}
	if w := ta.wait(t, "big", ""); w.GetExitCode() != 0 {
		t.Fatalf("container exit = %d, want 0", w.GetExitCode())
	}
	errOut, _ := stderr()
	want, _, _ := strings.Cut(errOut, " ")
	got := hex.EncodeToString(h.Sum(nil))
	if got != want {
		t.Fatalf("received %d bytes with sha256 %s, container wrote sha256 %q", n, got, errOut)
	}
	t.Logf("%d bytes, sha256 %s", n, got)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// Output produced while nobody reads is kept up to the limit; the reader
// that comes later is told exactly how much was lost.
func TestUnreadOutputLossIsReported(t *testing.T) {
	ta := startAgent(t, nil, container.Config{OutputLimit: 64 << 10})
	ta.create(t, "lossy", spec(t, false, "head", "-c", "1000000", "/dev/zero"), nil)
	if _, err := ta.client.StartContainer(ctx(t), &agentv1.StartContainerRequest{ContainerId: "lossy"}); err != nil {
		t.Fatal(err)
	}
	ta.wait(t, "lossy", "")
	got, dropped := ta.readOutput(t, "lossy", "", agentv1.OutputStream_OUTPUT_STREAM_STDOUT)()
	if len(got) != 64<<10 || dropped != 1000000-64<<10 {
		t.Fatalf("late reader got %d bytes, %d reported dropped; want %d and %d", len(got), dropped, 64<<10, 1000000-64<<10)
	}
}

// A process whose background child keeps its stdout open is reported
// exited after container.OutputGrace, not when the child ends, and what
// the child writes afterwards still reaches the reader.
func TestWaitDoesNotWaitForOutputHeldByAChild(t *testing.T) {
	ta := startAgent(t, nil, container.Config{})
	ta.create(t, "holder", spec(t, false, "sleep", "1000"), nil)
	if _, err := ta.client.StartContainer(ctx(t), &agentv1.StartContainerRequest{ContainerId: "holder"}); err != nil {
		t.Fatal(err)
	}
	// The child reads the process's stdin through fd 3 (an asynchronous
	// list's own stdin is /dev/null), so it ends only when the test says.
	_, err := ta.client.ExecProcess(ctx(t), &agentv1.ExecProcessRequest{
		ContainerId: "holder", ExecId: "parent",
		ProcessJson: process(t, false, "sh", "-c", `exec 3<&0; (read line <&3; echo "late $line") & echo early; exit 7`),
		Stdio:       &agentv1.StdioOptions{Stdin: true},
	})
	if err != nil {
		t.Fatalf("ExecProcess = %v", err)
	}
	stdout := ta.readOutput(t, "holder", "parent", agentv1.OutputStream_OUTPUT_STREAM_STDOUT)
	if w := ta.wait(t, "holder", "parent"); w.GetExitCode() != 7 {
		t.Fatalf("WaitProcess = exit %d, want 7", w.GetExitCode())
	}
	ref := &agentv1.ProcessRef{ContainerId: "holder", ExecId: "parent"}
	if _, err := ta.client.WriteStdin(ctx(t), &agentv1.WriteStdinRequest{Process: ref, Data: []byte("child\n")}); err != nil {
		t.Fatalf("WriteStdin = %v", err)
	}
	if got, dropped := stdout(); got != "early\nlate child\n" || dropped != 0 {
		t.Errorf("stdout = %q (dropped %d), want %q", got, dropped, "early\nlate child\n")
	}
}

// A reader whose connection drops in the middle of a stream, with chunks in
// flight, attaches again on a new connection where it was (ResumeAt): within
// the buffer's limit nothing is lost or repeated; beyond it the resumed
// reader is told exactly how many bytes it missed, and what it received is
// the stream's exact beginning and end.
func TestOutputResumesAfterDroppedConnection(t *testing.T) {
	const lines = 300000 // seq 1 300000: 1,988,895 bytes
	var want bytes.Buffer
	for i := 1; i <= lines; i++ {
		fmt.Fprintf(&want, "%d\n", i)
	}
	for _, tc := range []struct {
		name  string
		limit int
		lost  bool
	}{
		{"within the limit", 4 << 20, false},
		{"beyond the limit", 64 << 10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ta := startAgent(t, nil, container.Config{OutputLimit: tc.limit})
			ta.create(t, "seq", spec(t, false, "seq", "1", strconv.Itoa(lines)), nil)
			ref := &agentv1.ProcessRef{ContainerId: "seq"}
			r, err := outputtest.DropAndResume(ctx(t), func() (net.Conn, error) { return net.Dial("unix", ta.sock) }, ta.client, ref, 256<<10,
				func() error {
					_, err := ta.client.StartContainer(ctx(t), &agentv1.StartContainerRequest{ContainerId: "seq"})
					return err
				},
				func() error {
					if w := ta.wait(t, "seq", ""); w.GetExitCode() != 0 {
						return fmt.Errorf("seq exit = %d, want 0", w.GetExitCode())
					}
					return nil
				})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("dropped the connection holding %d bytes; resumed: %d bytes, %d reported lost", len(r.Before), len(r.After), r.Dropped)
			if err := r.Check(want.Bytes(), tc.lost); err != nil {
				t.Errorf("buffer limit %d: %v", tc.limit, err)
			}
		})
	}
}
