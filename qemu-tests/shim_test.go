package qemutests

// containerd-shim-confguest-v2 under a real containerd (Debian's): ctr runs containers
// from an image imported from a tarball built here; each container runs in its own VM.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ctrEvents collects `ctr events` output: one event per line, "<time> <namespace> <topic>
// <json>".
type ctrEvents struct {
	mu     sync.Mutex
	lines  []string
	cancel context.CancelFunc
	done   chan struct{}
}

func (e *ctrdEnv) watchEvents() *ctrEvents {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ev := &ctrEvents{cancel: cancel, done: make(chan struct{})}
	cmd := exec.CommandContext(ctx, e.ctrPath, "--address", e.sock, "events")
	out, err := cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		defer close(ev.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			ev.mu.Lock()
			ev.lines = append(ev.lines, sc.Text())
			ev.mu.Unlock()
		}
		cmd.Wait()
	}()
	e.t.Cleanup(func() { cancel(); <-ev.done })
	return ev
}

// taskEvent is the union of the task events' JSON fields that the tests look at.
type taskEvent struct {
	Topic       string
	ContainerID string `json:"container_id"`
	ID          string `json:"id"`
	ExecID      string `json:"exec_id"`
	ExitStatus  uint32 `json:"exit_status"`
}

// find returns the events of topic for container id (and process pid, if not empty).
func (ev *ctrEvents) find(topic, container string) []taskEvent {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	var out []taskEvent
	for _, l := range ev.lines {
		f := strings.SplitN(l, " ", 6)
		// "2026-11-26 21:43:09.4 +0000 UTC test /tasks/exit {...}"
		i := strings.Index(l, " "+topic+" ")
		if i < 0 || len(f) < 2 {
			continue
		}
		var te taskEvent
		if err := json.Unmarshal([]byte(strings.TrimSpace(l[i+len(topic)+2:])), &te); err != nil {
			continue
		}
		if te.ContainerID == container {
			te.Topic = topic
			out = append(out, te)
		}
	}
	return out
}

// waitEvent waits until an event of topic for container satisfies ok.
func (ev *ctrEvents) waitEvent(t *testing.T, topic, container string, ok func(taskEvent) bool) taskEvent {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, te := range ev.find(topic, container) {
			if ok == nil || ok(te) {
				return te
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	t.Fatalf("no %s event for %s; events seen:\n%s", topic, container, strings.Join(ev.lines, "\n"))
	return taskEvent{}
}

func TestShimCtr(t *testing.T) {
	e := startContainerd(t, ctrdOptions{})
	ref := e.importBusybox("confguest/busybox:test")
	ev := e.watchEvents()
	run := func(stdin string, id string, args ...string) cliResult {
		t.Helper()
		return e.ctr(stdin, append([]string{"run", "--rm", "--runtime", shimRuntime, ref, id}, args...)...)
	}

	t.Run("output and exit code", func(t *testing.T) {
		r := run("", "r1", "sh", "-c", "echo out; echo err >&2; exit 7")
		if r.code != 7 || r.stdout != "out\n" || !strings.Contains(r.stderr, "err") {
			t.Errorf("ctr run sh -c 'echo out; echo err >&2; exit 7' = exit %d, stdout %q, stderr %q; want 7, \"out\\n\", err",
				r.code, r.stdout, r.stderr)
		}
		for _, topic := range []string{"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"} {
			te := ev.waitEvent(t, topic, "r1", nil)
			if (topic == "/tasks/exit" || topic == "/tasks/delete") && te.ExitStatus != 7 {
				t.Errorf("%s event of r1: exit_status %d, want 7", topic, te.ExitStatus)
			}
		}
	})

	t.Run("stdin", func(t *testing.T) {
		in := "line one\nline two\n"
		if r := run(in, "r2", "cat"); r.code != 0 || r.stdout != in {
			t.Errorf("ctr run ... cat with stdin %q = exit %d, stdout %q (stderr %q)", in, r.code, r.stdout, r.stderr)
		}
	})

	t.Run("tty", func(t *testing.T) {
		// script gives ctr a terminal of 30 rows and 100 columns; ctr passes the size on
		// with ResizePty once the task started.
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		out, code := runInTerminal(t, exec.CommandContext(ctx, "script", terminalArgs(e.ctrPath, "--address", e.sock, "--namespace", e.ns,
			"run", "-t", "--rm", "--runtime", shimRuntime, ref, "t1", "sh", "-c", "sleep 1; tty; stty size; exit 6")...))
		if code != 6 || !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "30 100") {
			t.Errorf("ctr run -t ... tty; stty size; exit 6 = exit %d, output %q; want 6, a /dev/pts terminal of 30 rows and 100 columns", code, out)
		}
	})

	t.Run("exec and kill", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, e.ctrPath, "--address", e.sock, "--namespace", "test", "run", "--rm", "--runtime", shimRuntime,
			ref, "k1", "sh", "-c", `trap 'echo got TERM; exit 42' TERM; echo ready; while :; do sleep 1; done`)
		out := &watchBuffer{want: "ready", hit: make(chan struct{})}
		var errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = out, &errOut
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-out.hit:
		case <-time.After(3 * time.Minute):
			cmd.Process.Kill()
			t.Fatalf("k1 never printed ready; stdout %q, stderr %q", out.String(), errOut.String())
		}
		for _, tc := range []struct {
			name, stdin string
			args        []string
			code        int
			stdout      string
		}{
			{"exit code", "", []string{"sh", "-c", "echo in exec; exit 5"}, 5, "in exec\n"},
			{"stdin", "to exec\n", []string{"cat"}, 0, "to exec\n"},
			// PID 1 of the exec's PID namespace is k1's shell (its loop's sleep comes and goes).
			{"same container", "", []string{"sh", "-c", "[ \"$(cat /proc/1/comm)\" = sh ] && echo sees init"}, 0, "sees init\n"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				execID := "e-" + strings.ReplaceAll(tc.name, " ", "-")
				r := e.ctr(tc.stdin, append([]string{"task", "exec", "--exec-id", execID, "k1"}, tc.args...)...)
				if r.code != tc.code || r.stdout != tc.stdout {
					t.Errorf("ctr task exec k1 %q = exit %d, stdout %q (stderr %q); want %d, %q", tc.args, r.code, r.stdout, r.stderr, tc.code, tc.stdout)
				}
				ev.waitEvent(t, "/tasks/exec-added", "k1", func(te taskEvent) bool { return te.ExecID == execID })
				ev.waitEvent(t, "/tasks/exec-started", "k1", func(te taskEvent) bool { return te.ExecID == execID })
				ev.waitEvent(t, "/tasks/exit", "k1", func(te taskEvent) bool { return te.ID == execID && te.ExitStatus == uint32(tc.code) })
			})
		}
		e.mustCtr("task", "kill", "k1") // SIGTERM
		err := cmd.Wait()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		if code != 42 || !strings.Contains(out.String(), "got TERM") {
			t.Errorf("after ctr task kill: ctr run exit %d, stdout %q; want 42 and \"got TERM\"", code, out.String())
		}
	})

	t.Run("SIGKILL", func(t *testing.T) {
		e.mustCtr("run", "-d", "--runtime", shimRuntime, ref, "k2", "sleep", "1000")
		e.mustCtr("task", "kill", "-s", "SIGKILL", "k2")
		te := ev.waitEvent(t, "/tasks/exit", "k2", nil)
		if te.ExitStatus != 128+uint32(syscall.SIGKILL) {
			t.Errorf("exit status after SIGKILL = %d, want %d (128+9, as runc's shim reports it)", te.ExitStatus, 128+9)
		}
		if r := e.ctr("", "task", "kill", "k2"); r.code == 0 {
			t.Errorf("ctr task kill of an exited task succeeded; want an error")
		}
		e.mustCtr("task", "delete", "k2")
		e.mustCtr("containers", "rm", "k2")
		ev.waitEvent(t, "/tasks/delete", "k2", func(te taskEvent) bool { return te.ExitStatus == 137 })
	})

	t.Run("shim crash", func(t *testing.T) {
		e.mustCtr("run", "-d", "--runtime", shimRuntime, ref, "c1", "sleep", "1000")
		var shimPID int
		// This containerd's shim of c1 only: other test runs on the machine may run a c1 too.
		for _, p := range procsMentioning("\x00-id\x00c1\x00") {
			if strings.Contains(p, "containerd-shim-confguest-v2") && strings.Contains(p, " "+e.sock+" ") {
				shimPID = atoiPrefix(p)
			}
		}
		if shimPID == 0 {
			t.Fatalf("no shim process for c1 found")
		}
		if len(procsMentioning(e.runDir)) == 0 {
			t.Fatalf("no VM process under %s while c1 runs", e.runDir)
		}
		syscall.Kill(shimPID, syscall.SIGKILL)
		// containerd notices the dead shim and runs "containerd-shim-confguest-v2 delete".
		te := ev.waitEvent(t, "/tasks/exit", "c1", nil)
		if te.ExitStatus != 137 {
			t.Errorf("exit status of c1 after its shim was killed = %d, want 137", te.ExitStatus)
		}
		e.ctr("", "task", "delete", "c1")
		e.mustCtr("containers", "rm", "c1")
		e.checkNoLeftovers("c1")
	})

	e.checkNoLeftovers("r1", "r2", "t1", "k1", "k2", "c1")
}

// atoiPrefix parses the PID at the start of a procsMentioning line ("123: cmdline").
func atoiPrefix(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}
