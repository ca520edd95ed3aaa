package launcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentv1 "confguest/agent/api/v1"
)

// IO connects a process to the caller's streams. A nil Stdout or Stderr is not read (the
// agent keeps that output in its buffer); give no Stderr for a process with a terminal.
// Stdin, if not nil, is forwarded to the process until EOF, then the process's stdin is
// closed. Resize delivers terminal sizes.
type IO struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Resize <-chan [2]uint32
	// Warn receives one line for each loss of output the agent reports and for each
	// stream the policy hides; nil for none.
	Warn io.Writer
}

// Streams copies one process's stdio between the caller's streams and the agent: output
// through ReadOutput with credit, from offset 0 so that nothing written before is lost,
// input through WriteStdin.
type Streams struct {
	agent  agentv1.AgentClient
	ref    *agentv1.ProcessRef
	cancel context.CancelFunc

	readers sync.WaitGroup
	mu      sync.Mutex
	errs    []error

	stdin      io.Reader
	stdinDone  chan struct{} // closed once stdin reached EOF and the process's stdin was closed
	closeStdin sync.Once
}

// Stream starts copying process p's stdio as stdio says. ctx bounds the copying; it
// should live as long as the process.
func (g *Guest) Stream(ctx context.Context, p ProcessRef, stdio IO) *Streams {
	ctx, cancel := context.WithCancel(ctx)
	st := &Streams{agent: g.agent, ref: p.message(), cancel: cancel, stdin: stdio.Stdin, stdinDone: make(chan struct{})}
	for which, w := range map[agentv1.OutputStream]io.Writer{
		agentv1.OutputStream_OUTPUT_STREAM_STDOUT: stdio.Stdout,
		agentv1.OutputStream_OUTPUT_STREAM_STDERR: stdio.Stderr,
	} {
		if w == nil {
			continue
		}
		st.readers.Add(1)
		go func() {
			defer st.readers.Done()
			err := readOutput(ctx, g.agent, st.ref, which, w, stdio.Warn)
			if err == nil || ctx.Err() != nil {
				return
			}
			st.mu.Lock()
			st.errs = append(st.errs, fmt.Errorf("copy %s: %w", which.Name(), err))
			st.mu.Unlock()
		}()
	}
	if stdio.Stdin != nil {
		go st.copyStdin(ctx, stdio.Stdin)
	} else {
		close(st.stdinDone)
	}
	if stdio.Resize != nil {
		go func() {
			for {
				select {
				case sz := <-stdio.Resize:
					g.agent.ResizeTTY(ctx, &agentv1.ResizeTTYRequest{Process: st.ref, Width: sz[0], Height: sz[1]})
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	return st
}

// Drain waits until the process's output was copied to the end, at most max (a daemonised
// child may hold the streams open after the process exited), then stops all copying and
// returns the errors copying met.
func (st *Streams) Drain(ctx context.Context, max time.Duration) error {
	drained := make(chan struct{})
	go func() { st.readers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(max):
	case <-ctx.Done():
		st.Stop()
		return ctx.Err()
	}
	st.Stop()
	st.mu.Lock()
	defer st.mu.Unlock()
	return errors.Join(st.errs...)
}

// Stop ends all copying.
func (st *Streams) Stop() {
	st.cancel()
	st.readers.Wait()
}

// CloseStdin closes the process's stdin once what was read from IO.Stdin before reached
// it; a reader that does not reach EOF within a second is closed (if it is an io.Closer)
// after that grace.
func (st *Streams) CloseStdin(ctx context.Context) {
	select {
	case <-st.stdinDone:
		return
	case <-time.After(time.Second):
	case <-ctx.Done():
	}
	if c, ok := st.stdin.(io.Closer); ok {
		c.Close()
	}
	st.closeGuestStdin(context.WithoutCancel(ctx))
}

// copyStdin forwards r to the process's stdin until EOF, then closes the process's stdin.
func (st *Streams) copyStdin(ctx context.Context, r io.Reader) {
	defer st.closeGuestStdin(ctx)
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := st.agent.WriteStdin(ctx, &agentv1.WriteStdinRequest{Process: st.ref, Data: append([]byte(nil), buf[:n]...)}); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (st *Streams) closeGuestStdin(ctx context.Context) {
	st.closeStdin.Do(func() {
		if ctx.Err() == nil {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			st.agent.CloseStdin(cctx, &agentv1.CloseStdinRequest{Process: st.ref})
			cancel()
		}
		close(st.stdinDone)
	})
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
