package server

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentv1 "confguest/agent/api/v1"
	"confguest/agent/container"
)

func code(err error) codes.Code {
	s, _ := status.FromError(err)
	return s.Code()
}

func TestContainerLifecycle(t *testing.T) {
	ta := startAgent(t, nil, container.Config{})
	const id = "life-1"
	ta.create(t, id, spec(t, false, "sh", "-c", "echo hello; echo oops >&2; hostname; exit 7"), nil)

	st, err := ta.client.State(ctx(t), &agentv1.StateRequest{ContainerId: id})
	if err != nil || st.GetContainer().GetStatus() != "created" {
		t.Fatalf("State after create = %v, %v, want status created", st, err)
	}
	stdout := ta.readOutput(t, id, "", agentv1.OutputStream_OUTPUT_STREAM_STDOUT)
	stderr := ta.readOutput(t, id, "", agentv1.OutputStream_OUTPUT_STREAM_STDERR)
	if _, err := ta.client.StartContainer(ctx(t), &agentv1.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer = %v", err)
	}
	if w := ta.wait(t, id, ""); w.GetExitCode() != 7 || w.GetSignal() != 0 {
		t.Fatalf("WaitProcess = exit %d signal %d, want exit 7 signal 0", w.GetExitCode(), w.GetSignal())
	}
	if out, dropped := stdout(); out != "hello\nconfguest-test\n" || dropped != 0 {
		t.Errorf("stdout = %q (dropped %d), want %q", out, dropped, "hello\nconfguest-test\n")
	}
	if out, _ := stderr(); out != "oops\n" {
		t.Errorf("stderr = %q, want %q", out, "oops\n")
	}
	_, err = ta.client.StartContainer(ctx(t), &agentv1.StartContainerRequest{ContainerId: id})
	if code(err) != codes.FailedPrecondition {
		t.Errorf("second StartContainer = %v, want FailedPrecondition", err)
	}
	list, err := ta.client.ListContainers(ctx(t), &agentv1.ListContainersRequest{})
	if err != nil || len(list.GetContainers()) != 1 || list.GetContainers()[0].GetStatus() != "stopped" {
		t.Fatalf("ListContainers = %v, %v, want one stopped container", list, err)
	}
	pid := list.GetContainers()[0].GetPid()
	if _, err := ta.client.DeleteContainer(ctx(t), &agentv1.DeleteContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("DeleteContainer = %v", err)
	}
	if left := leftovers(t, ta.stateDir, id, pid); len(left) > 0 {
		t.Errorf("after DeleteContainer, left behind:\n%s", strings.Join(left, "\n"))
	}
	if _, err := ta.client.State(ctx(t), &agentv1.StateRequest{ContainerId: id}); code(err) != codes.NotFound {
		t.Errorf("State after delete = %v, want NotFound", err)
	}
}

func TestExecSignalsStdin(t *testing.T) {
	ta := startAgent(t, nil, container.Config{})
	const id = "exec-1"
	ta.create(t, id, spec(t, false, "sleep", "1000"), nil)
	if _, err := ta.client.StartContainer(ctx(t), &agentv1.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer = %v", err)
	}
	exec := func(execID string, stdin bool, args ...string) {
		t.Helper()
		_, err := ta.client.ExecProcess(ctx(t), &agentv1.ExecProcessRequest{
			ContainerId: id, ExecId: execID, ProcessJson: process(t, false, args...),
			Stdio: &agentv1.StdioOptions{Stdin: stdin},
		})
		if err != nil {
			t.Fatalf("ExecProcess(%s %q) = %v", execID, args, err)
		}
	}

	t.Run("exit code", func(t *testing.T) {
		exec("exit3", false, "sh", "-c", "exit 3")
		if w := ta.wait(t, id, "exit3"); w.GetExitCode() != 3 {
			t.Errorf("exec exit code = %d, want 3", w.GetExitCode())
		}
	})
	t.Run("stdin round trip", func(t *testing.T) {
		exec("cat", true, "cat")
		out := ta.readOutput(t, id, "cat", agentv1.OutputStream_OUTPUT_STREAM_STDOUT)
		ref := &agentv1.ProcessRef{ContainerId: id, ExecId: "cat"}
		w, err := ta.client.WriteStdin(ctx(t), &agentv1.WriteStdinRequest{Process: ref, Data: []byte("ping\n")})
		if err != nil || w.GetWritten() != 5 {
			t.Fatalf("WriteStdin = %v, %v, want 5 bytes", w, err)
		}
		if _, err := ta.client.CloseStdin(ctx(t), &agentv1.CloseStdinRequest{Process: ref}); err != nil {
			t.Fatalf("CloseStdin = %v", err)
		}
		if got, _ := out(); got != "ping\n" {
			t.Errorf("cat stdout = %q, want %q", got, "ping\n")
		}
		if w := ta.wait(t, id, "cat"); w.GetExitCode() != 0 {
			t.Errorf("cat exit = %d, want 0", w.GetExitCode())
		}
		_, err = ta.client.WriteStdin(ctx(t), &agentv1.WriteStdinRequest{Process: ref, Data: []byte("x")})
		if code(err) != codes.FailedPrecondition {
			t.Errorf("WriteStdin after CloseStdin = %v, want FailedPrecondition", err)
		}
	})
	t.Run("SIGTERM gives the signal", func(t *testing.T) {
		exec("sleeper", false, "sleep", "1000")
		_, err := ta.client.SignalProcess(ctx(t), &agentv1.SignalProcessRequest{Process: &agentv1.ProcessRef{ContainerId: id, ExecId: "sleeper"}, Signal: 15})
		if err != nil {
			t.Fatalf("SignalProcess = %v", err)
		}
		if w := ta.wait(t, id, "sleeper"); w.GetSignal() != 15 || w.GetExitCode() != 143 {
			t.Errorf("WaitProcess = exit %d signal %d, want 143 signal 15", w.GetExitCode(), w.GetSignal())
		}
	})
	t.Run("duplicate exec id", func(t *testing.T) {
		_, err := ta.client.ExecProcess(ctx(t), &agentv1.ExecProcessRequest{ContainerId: id, ExecId: "exit3", ProcessJson: process(t, false, "true")})
		if code(err) != codes.AlreadyExists {
			t.Errorf("ExecProcess with a used exec id = %v, want AlreadyExists", err)
		}
	})
	t.Run("stats", func(t *testing.T) {
		s, err := ta.client.Stats(ctx(t), &agentv1.StatsRequest{ContainerId: id})
		if err != nil {
			t.Fatalf("Stats = %v", err)
		}
		if s.GetPids().GetCurrent() < 1 || s.GetMemory().GetUsageBytes() == 0 {
			t.Errorf("Stats = %v, want at least one pid and some memory", s)
		}
	})
	t.Run("kill init", func(t *testing.T) {
		_, err := ta.client.SignalProcess(ctx(t), &agentv1.SignalProcessRequest{Process: &agentv1.ProcessRef{ContainerId: id}, Signal: 9})
		if err != nil {
			t.Fatalf("SignalProcess(SIGKILL) = %v", err)
		}
		if w := ta.wait(t, id, ""); w.GetSignal() != 9 {
			t.Errorf("init WaitProcess = exit %d signal %d, want signal 9", w.GetExitCode(), w.GetSignal())
		}
		// A process that has exited is not found, as containerd answers a kill of a
		// finished process; the host then waits for the exit it reports.
		_, err = ta.client.SignalProcess(ctx(t), &agentv1.SignalProcessRequest{Process: &agentv1.ProcessRef{ContainerId: id}, Signal: 15})
		if code(err) != codes.NotFound || !strings.Contains(err.Error(), "has exited") {
			t.Errorf("SignalProcess(SIGTERM) to an exited init = %v, want NotFound: has exited", err)
		}
		_, err = ta.client.ExecProcess(ctx(t), &agentv1.ExecProcessRequest{ContainerId: id, ExecId: "late", ProcessJson: process(t, false, "true")})
		if code(err) != codes.FailedPrecondition {
			t.Errorf("ExecProcess into a stopped container = %v, want FailedPrecondition", err)
		}
	})
	if _, err := ta.client.DeleteContainer(ctx(t), &agentv1.DeleteContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("DeleteContainer = %v", err)
	}
	if left := leftovers(t, ta.stateDir, id, 0); len(left) > 0 {
		t.Errorf("after DeleteContainer, left behind:\n%s", strings.Join(left, "\n"))
	}
}

func TestTTY(t *testing.T) {
	ta := startAgent(t, nil, container.Config{})
	const id = "tty-1"
	ta.create(t, id, spec(t, true, "sh", "-c", "stty size; read line; echo got:$line"),
		&agentv1.StdioOptions{Stdin: true, TtyWidth: 100, TtyHeight: 30})
	out := ta.readOutput(t, id, "", agentv1.OutputStream_OUTPUT_STREAM_STDOUT)
	if _, err := ta.client.StartContainer(ctx(t), &agentv1.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer = %v", err)
	}
	ref := &agentv1.ProcessRef{ContainerId: id}
	if _, err := ta.client.WriteStdin(ctx(t), &agentv1.WriteStdinRequest{Process: ref, Data: []byte("hi\n")}); err != nil {
		t.Fatalf("WriteStdin = %v", err)
	}
	if w := ta.wait(t, id, ""); w.GetExitCode() != 0 {
		t.Errorf("WaitProcess = %d, want 0", w.GetExitCode())
	}
	got, _ := out()
	for _, want := range []string{"30 100\r\n", "got:hi\r\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("tty output %q does not contain %q", got, want)
		}
	}
	if _, err := ta.client.ResizeTTY(ctx(t), &agentv1.ResizeTTYRequest{Process: ref, Width: 80, Height: 24}); code(err) == codes.NotFound {
		t.Errorf("ResizeTTY = %v", err)
	}
	if _, err := ta.client.DeleteContainer(ctx(t), &agentv1.DeleteContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("DeleteContainer = %v", err)
	}
}

// Deleting a container that was never started, or one whose output has a
// reader that stopped granting credit, leaves nothing behind.
func TestDeleteUnstartedAndBlocked(t *testing.T) {
	ta := startAgent(t, nil, container.Config{})
	ta.create(t, "never", spec(t, false, "true"), nil)
	st, _ := ta.client.State(ctx(t), &agentv1.StateRequest{ContainerId: "never"})
	if _, err := ta.client.DeleteContainer(ctx(t), &agentv1.DeleteContainerRequest{ContainerId: "never"}); err != nil {
		t.Fatalf("DeleteContainer(created) = %v", err)
	}
	if left := leftovers(t, ta.stateDir, "never", st.GetContainer().GetPid()); len(left) > 0 {
		t.Errorf("after deleting an unstarted container, left behind:\n%s", strings.Join(left, "\n"))
	}

	ta.create(t, "blocked", spec(t, false, "head", "-c", "8000000", "/dev/zero"), nil)
	s, err := ta.client.ReadOutput(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&agentv1.ReadOutputRequest{Process: &agentv1.ProcessRef{ContainerId: "blocked"}, Credit: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := ta.client.StartContainer(ctx(t), &agentv1.StartContainerRequest{ContainerId: "blocked"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatalf("first chunk: %v", err)
	}
	st, _ = ta.client.State(ctx(t), &agentv1.StateRequest{ContainerId: "blocked"})
	if st.GetContainer().GetStatus() != "running" {
		t.Errorf("writer with an attached, idle reader: status %q, want running (blocked on output)", st.GetContainer().GetStatus())
	}
	if _, err := ta.client.DeleteContainer(ctx(t), &agentv1.DeleteContainerRequest{ContainerId: "blocked"}); err != nil {
		t.Fatalf("DeleteContainer(blocked) = %v", err)
	}
	if left := leftovers(t, ta.stateDir, "blocked", st.GetContainer().GetPid()); len(left) > 0 {
		t.Errorf("after deleting a blocked container, left behind:\n%s", strings.Join(left, "\n"))
	}
}
