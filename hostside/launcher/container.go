package launcher

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	agentv1 "confguest/agent/api/v1"
)

// The operations of confguest run, start, exec and logs, made of the Guest's primitives.

// outputDrain bounds how long output is still read after a process exited (a daemonised
// child may hold its streams open).
const outputDrain = 5 * time.Second

// processIO is what of stdio process p reads: stdin only if p asked for it, no stderr
// with a terminal.
func processIO(p Process, stdio IO) IO {
	if !p.Stdin {
		stdio.Stdin = nil
	}
	if p.TTY {
		stdio.Stderr = nil
	}
	if stdio.Stdout == nil {
		stdio.Stdout = io.Discard
	}
	if stdio.Stderr == nil && !p.TTY {
		stdio.Stderr = io.Discard
	}
	return stdio
}

func (p Process) stdio() Stdio { return Stdio{Stdin: p.Stdin, Width: p.Width, Height: p.Height} }

// RunContainer creates and starts container id running p on disk d, streams its stdio,
// waits for it to exit, deletes it and returns its exit code (128+signal if it was killed).
func (g *Guest) RunContainer(ctx context.Context, id string, d Disk, p Process, stdio IO) (int, error) {
	done := g.s.opts.Timings.Start(PhaseContainerStart)
	if _, err := g.CreateContainer(ctx, id, d, ContainerSpec(p, id), p.stdio()); err != nil {
		done()
		return 0, err
	}
	ref := ProcessRef{ContainerID: id}
	// Readers attach before the start so that nothing is read late; the agent buffers anyway.
	st := g.Stream(ctx, ref, processIO(p, stdio))
	if err := g.Start(ctx, id); err != nil {
		done()
		st.Stop()
		return 0, err
	}
	done()
	g.s.progress("container %s started", id)
	defer g.s.opts.Timings.Start(PhaseContainerRun)()
	code, err := g.waitDrained(ctx, ref, st)
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if derr := g.Delete(dctx, id); derr != nil && err == nil {
		err = derr
	}
	return code, err
}

// waitDrained waits for process ref to exit and its output to be read to the end.
func (g *Guest) waitDrained(ctx context.Context, ref ProcessRef, st *Streams) (int, error) {
	e, err := g.Wait(ctx, ref)
	if err != nil {
		st.Stop()
		return 0, err
	}
	return e.Code, st.Drain(ctx, outputDrain)
}

// StartContainer creates and starts container id running p on disk d without attaching
// (confguest start); its output stays in the agent's buffers for Logs.
func (g *Guest) StartContainer(ctx context.Context, id string, d Disk, p Process) error {
	done := g.s.opts.Timings.Start(PhaseContainerStart)
	defer done()
	p.Stdin, p.TTY = false, false
	if _, err := g.CreateContainer(ctx, id, d, ContainerSpec(p, id), p.stdio()); err != nil {
		return err
	}
	return g.Start(ctx, id)
}

// Exec runs p as an additional process execID in container id and returns its exit code.
func (g *Guest) Exec(ctx context.Context, id, execID string, p Process, stdio IO) (int, error) {
	if _, err := g.StartExec(ctx, id, execID, processSpec(p), p.stdio()); err != nil {
		return 0, err
	}
	ref := ProcessRef{ContainerID: id, ExecID: execID}
	return g.waitDrained(ctx, ref, g.Stream(ctx, ref, processIO(p, stdio)))
}

// Logs copies what container id's init process wrote to stdio.Stdout and stdio.Stderr, with
// notes about lost or hidden output on stdio.Warn. With follow it returns when the process
// closed its streams; without, once no more output arrives for idle.
func (g *Guest) Logs(ctx context.Context, id string, stdio IO, follow bool, idle time.Duration) error {
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
			err := readOutput(rctx, g.agent, ref, agentv1.OutputStream(i), w, stdio.Warn)
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
