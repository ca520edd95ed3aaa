package launcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentv1 "confguest/agent/api/v1"
	"confguest/hostside/image"
)

// IO connects a container process to the launcher's streams. Stdin is read only if the
// process was created with Stdin; Stderr is unused for a TTY. Resize delivers TTY sizes.
type IO struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Resize <-chan [2]uint32
	// Warn receives notes about lost or hidden output; nil for none.
	Warn io.Writer
}

// CreateContainer creates container id in the guest with its rootfs on the disk attached
// as serial, and p as its init process.
func (s *Sandbox) CreateContainer(ctx context.Context, id string, d image.Disk, serial string, p Process) error {
	spec, err := json.Marshal(ContainerSpec(p, id))
	if err != nil {
		return fmt.Errorf("encode container spec: %w", err)
	}
	v := d.Verity
	_, err = s.Agent.CreateContainer(ctx, &agentv1.CreateContainerRequest{
		ContainerId: id,
		SpecJson:    spec,
		Rootfs: &agentv1.Rootfs{Source: &agentv1.Rootfs_Block{Block: &agentv1.BlockRootfs{
			Serial: serial,
			FsType: "erofs",
			Verity: &agentv1.Verity{
				RootHash: v.RootHash, Salt: v.Salt, HashOffset: v.HashOffset, DataBlocks: v.DataBlocks,
				DataBlockSize: v.DataBlockSize, HashBlockSize: v.HashBlockSize, HashAlgorithm: v.Algorithm,
			},
		}}},
		Stdio: &agentv1.StdioOptions{Stdin: p.Stdin, TtyWidth: p.Width, TtyHeight: p.Height},
	})
	if err != nil {
		return fmt.Errorf("create container %s: %w", id, err)
	}
	return nil
}

// RunContainer creates and starts container id, streams its stdio, waits for it to exit,
// deletes it and returns its exit code (128+signal if it was killed).
func (s *Sandbox) RunContainer(ctx context.Context, id string, d image.Disk, serial string, p Process, stdio IO) (int, error) {
	done := s.opts.Timings.Start(PhaseContainerStart)
	if err := s.CreateContainer(ctx, id, d, serial, p); err != nil {
		done()
		return 0, err
	}
	ref := &agentv1.ProcessRef{ContainerId: id}
	// Readers attach before the start so that nothing is read late; the agent buffers anyway.
	att := attach(ctx, s.Agent, ref, p, stdio)
	if _, err := s.Agent.StartContainer(ctx, &agentv1.StartContainerRequest{ContainerId: id}); err != nil {
		done()
		att.stop()
		return 0, fmt.Errorf("start container %s: %w", id, err)
	}
	done()
	s.progress("container %s started", id)
	defer s.opts.Timings.Start(PhaseContainerRun)()
	code, err := att.wait(ctx)
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, derr := s.Agent.DeleteContainer(dctx, &agentv1.DeleteContainerRequest{ContainerId: id}); derr != nil && err == nil {
		err = fmt.Errorf("delete container %s: %w", id, derr)
	}
	return code, err
}

// StartContainer creates and starts container id without attaching (confguest start); its
// output stays in the agent's buffers for Logs.
func (s *Sandbox) StartContainer(ctx context.Context, id string, d image.Disk, serial string, p Process) error {
	done := s.opts.Timings.Start(PhaseContainerStart)
	defer done()
	p.Stdin, p.TTY = false, false
	if err := s.CreateContainer(ctx, id, d, serial, p); err != nil {
		return err
	}
	if _, err := s.Agent.StartContainer(ctx, &agentv1.StartContainerRequest{ContainerId: id}); err != nil {
		return fmt.Errorf("start container %s: %w", id, err)
	}
	return nil
}

// Exec runs p as an additional process execID in container id and returns its exit code.
func (s *Sandbox) Exec(ctx context.Context, id, execID string, p Process, stdio IO) (int, error) {
	pj, err := json.Marshal(processSpec(p))
	if err != nil {
		return 0, fmt.Errorf("encode process: %w", err)
	}
	ref := &agentv1.ProcessRef{ContainerId: id, ExecId: execID}
	if _, err := s.Agent.ExecProcess(ctx, &agentv1.ExecProcessRequest{
		ContainerId: id, ExecId: execID, ProcessJson: pj,
		Stdio: &agentv1.StdioOptions{Stdin: p.Stdin, TtyWidth: p.Width, TtyHeight: p.Height},
	}); err != nil {
		return 0, fmt.Errorf("exec in container %s: %w", id, err)
	}
	return attach(ctx, s.Agent, ref, p, stdio).wait(ctx)
}

// Logs copies what container id's init process wrote to stdio.Stdout and stdio.Stderr, with
// notes about lost or hidden output on stdio.Warn. With follow it returns when the process
// closed its streams; without, once no more output arrives for idle.
func (s *Sandbox) Logs(ctx context.Context, id string, stdio IO, follow bool, idle time.Duration) error {
	ref := &agentv1.ProcessRef{ContainerId: id}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, w := range []io.Writer{stdio.Stdout, stdio.Stderr} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx := ctx
			if !follow {
				var cancel context.CancelFunc
				rctx, cancel = context.WithCancel(ctx)
				defer cancel()
				w = &idleWriter{w: w, idle: idle, cancel: cancel}
				w.(*idleWriter).arm()
			}
			err := readOutput(rctx, s.Agent, ref, agentv1.OutputStream(i), w, stdio.Warn)
			if !follow && errors.Is(err, context.Canceled) && ctx.Err() == nil {
				err = nil
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// idleWriter cancels a read once no data arrived for idle.
type idleWriter struct {
	w      io.Writer
	idle   time.Duration
	cancel context.CancelFunc
	mu     sync.Mutex
	t      *time.Timer
}

func (iw *idleWriter) arm() {
	iw.mu.Lock()
	defer iw.mu.Unlock()
	if iw.t == nil {
		iw.t = time.AfterFunc(iw.idle, iw.cancel)
		return
	}
	iw.t.Reset(iw.idle)
}

func (iw *idleWriter) Write(b []byte) (int, error) {
	iw.arm()
	return iw.w.Write(b)
}

// attachment is a process whose stdio is being streamed.
type attachment struct {
	agent   agentv1.AgentClient
	ref     *agentv1.ProcessRef
	cancel  context.CancelFunc
	readers sync.WaitGroup
	errs    []error
	mu      sync.Mutex
}

func attach(ctx context.Context, agent agentv1.AgentClient, ref *agentv1.ProcessRef, p Process, stdio IO) *attachment {
	rctx, cancel := context.WithCancel(ctx)
	a := &attachment{agent: agent, ref: ref, cancel: cancel}
	streams := []struct {
		which agentv1.OutputStream
		w     io.Writer
	}{{agentv1.OutputStream_OUTPUT_STREAM_STDOUT, stdio.Stdout}}
	if !p.TTY {
		streams = append(streams, struct {
			which agentv1.OutputStream
			w     io.Writer
		}{agentv1.OutputStream_OUTPUT_STREAM_STDERR, stdio.Stderr})
	}
	for _, st := range streams {
		w := st.w
		if w == nil {
			w = io.Discard
		}
		a.readers.Add(1)
		go func() {
			defer a.readers.Done()
			err := readOutput(rctx, agent, ref, st.which, w, stdio.Warn)
			if err == nil || rctx.Err() != nil {
				return
			}
			a.mu.Lock()
			a.errs = append(a.errs, err)
			a.mu.Unlock()
		}()
	}
	if p.Stdin && stdio.Stdin != nil {
		go copyStdin(rctx, agent, ref, stdio.Stdin)
	}
	if stdio.Resize != nil {
		go func() {
			for {
				select {
				case sz := <-stdio.Resize:
					agent.ResizeTTY(rctx, &agentv1.ResizeTTYRequest{Process: ref, Width: sz[0], Height: sz[1]})
				case <-rctx.Done():
					return
				}
			}
		}()
	}
	return a
}

func (a *attachment) stop() {
	a.cancel()
	a.readers.Wait()
}

// wait returns the process's exit code once it exited and its output was read to the end.
func (a *attachment) wait(ctx context.Context) (int, error) {
	defer a.stop()
	w, err := a.agent.WaitProcess(ctx, &agentv1.WaitProcessRequest{Process: a.ref})
	if err != nil {
		return 0, fmt.Errorf("wait for process: %w", err)
	}
	drained := make(chan struct{})
	go func() { a.readers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		// Output still open after exit (a daemonised child holds it): stop reading.
	case <-ctx.Done():
		return int(w.GetExitCode()), ctx.Err()
	}
	a.mu.Lock()
	err = errors.Join(a.errs...)
	a.mu.Unlock()
	return int(w.GetExitCode()), err
}

// policyDenial returns the agent's reason if err is its refusal by the policy.
func policyDenial(err error) (string, bool) {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) && se.GRPCStatus().Code() == codes.PermissionDenied {
		return se.GRPCStatus().Message(), true
	}
	return "", false
}

// readOutput copies one output stream of a process to w until the agent marks its end,
// with a line on warn (if not nil) for each loss the agent reports. A stream the policy
// hides is not an error: the process runs all the same, and warn gets one line that says
// so.
func readOutput(ctx context.Context, agent agentv1.AgentClient, ref *agentv1.ProcessRef, which agentv1.OutputStream, w io.Writer, warn io.Writer) error {
	note := func(format string, args ...any) {
		if warn != nil {
			fmt.Fprintf(warn, "confguest: "+format+"\n", args...)
		}
	}
	_, err := agentv1.CopyOutput(ctx, agent, ref, which, w, agentv1.OnLoss(func(n uint64) {
		note("%d bytes of %s were lost (the agent's buffer filled)", n, which.Name())
	}))
	if reason, ok := policyDenial(err); ok {
		note("the guest's policy hides %s of this process: it is not shown (%s)", which.Name(), reason)
		return nil
	}
	return err
}

// copyStdin forwards r to the process's stdin and closes it at EOF.
func copyStdin(ctx context.Context, agent agentv1.AgentClient, ref *agentv1.ProcessRef, r io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := agent.WriteStdin(ctx, &agentv1.WriteStdinRequest{Process: ref, Data: append([]byte(nil), buf[:n]...)}); werr != nil {
				return
			}
		}
		if err != nil {
			if ctx.Err() == nil {
				agent.CloseStdin(ctx, &agentv1.CloseStdinRequest{Process: ref})
			}
			return
		}
	}
}
