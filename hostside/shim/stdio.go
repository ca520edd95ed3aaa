package shim

import (
	"context"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/fifo"
	"github.com/containerd/log"

	agentv1 "confguest/agent/api/v1"
)

// stdioPaths are the FIFOs containerd gave for one process; empty means none.
type stdioPaths struct {
	Stdin, Stdout, Stderr string
	Terminal              bool
}

// streams copies one process's stdio between containerd's FIFOs and the agent: output
// through ReadOutput with credit, input through WriteStdin. Output is read from offset 0,
// so nothing the process wrote before the FIFOs were open is lost.
type streams struct {
	agent agentv1.AgentClient
	ref   *agentv1.ProcessRef

	outputs sync.WaitGroup
	cancel  context.CancelFunc

	stdinMu     sync.Mutex
	stdin       io.ReadCloser
	stdinDone   chan struct{} // closed when stdin reached EOF and was closed in the guest
	closeStdinO sync.Once
}

// openStreams opens the FIFOs of p and starts copying. ctx bounds the copying; it should
// live as long as the process.
func openStreams(ctx context.Context, agent agentv1.AgentClient, ref *agentv1.ProcessRef, p stdioPaths) (*streams, error) {
	ctx, cancel := context.WithCancel(ctx)
	st := &streams{agent: agent, ref: ref, cancel: cancel, stdinDone: make(chan struct{})}
	outs := []struct {
		path  string
		which agentv1.OutputStream
	}{{p.Stdout, agentv1.OutputStream_OUTPUT_STREAM_STDOUT}}
	if !p.Terminal {
		outs = append(outs, struct {
			path  string
			which agentv1.OutputStream
		}{p.Stderr, agentv1.OutputStream_OUTPUT_STREAM_STDERR})
	}
	var opened []io.Closer
	for _, o := range outs {
		if o.path == "" {
			continue
		}
		octx, ocancel := context.WithTimeout(ctx, 30*time.Second)
		w, err := fifo.OpenFifo(octx, o.path, syscall.O_WRONLY, 0)
		ocancel()
		if err != nil {
			for _, c := range opened {
				c.Close()
			}
			cancel()
			return nil, fmt.Errorf("open %s FIFO %s: %w", o.which.Name(), o.path, err)
		}
		opened = append(opened, w)
		st.outputs.Add(1)
		go func() {
			defer st.outputs.Done()
			defer w.Close()
			if err := copyOutput(ctx, agent, ref, o.which, w); err != nil && ctx.Err() == nil {
				log.G(ctx).WithError(err).WithField("stream", o.which.Name()).Warn("copy output")
			}
		}()
	}
	if p.Stdin == "" {
		close(st.stdinDone)
		return st, nil
	}
	r, err := fifo.OpenFifo(ctx, p.Stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		st.stop()
		return nil, fmt.Errorf("open stdin FIFO %s: %w", p.Stdin, err)
	}
	st.stdin = r
	go st.copyStdin(ctx, r)
	return st, nil
}

// copyOutput copies one output stream of a process to w until the agent marks its end,
// logging each loss the agent reports.
func copyOutput(ctx context.Context, agent agentv1.AgentClient, ref *agentv1.ProcessRef, which agentv1.OutputStream, w io.Writer) error {
	_, err := agentv1.CopyOutput(ctx, agent, ref, which, w, agentv1.OnLoss(func(n uint64) {
		log.G(ctx).WithField("stream", which.Name()).Warnf("%d bytes of output were lost (the agent's buffer filled)", n)
	}))
	return err
}

// copyStdin forwards the stdin FIFO to the process until EOF, then closes its stdin.
func (st *streams) copyStdin(ctx context.Context, r io.Reader) {
	defer st.closeGuestStdin(ctx)
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := st.agent.WriteStdin(ctx, &agentv1.WriteStdinRequest{Process: st.ref, Data: append([]byte(nil), buf[:n]...)}); werr != nil {
				if ctx.Err() == nil {
					log.G(ctx).WithError(werr).Warn("write stdin")
				}
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (st *streams) closeGuestStdin(ctx context.Context) {
	st.closeStdinO.Do(func() {
		if ctx.Err() == nil {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			st.agent.CloseStdin(cctx, &agentv1.CloseStdinRequest{Process: st.ref})
			cancel()
		}
		close(st.stdinDone)
	})
}

// closeStdin is CloseIO: what the client wrote before closing is delivered, then the
// process's stdin is closed. A client that keeps its end open gets a second's grace.
func (st *streams) closeStdin(ctx context.Context) {
	select {
	case <-st.stdinDone:
		return
	case <-time.After(time.Second):
	case <-ctx.Done():
	}
	st.stdinMu.Lock()
	if st.stdin != nil {
		st.stdin.Close()
	}
	st.stdinMu.Unlock()
	st.closeGuestStdin(context.WithoutCancel(ctx))
}

// drain waits until the output was copied to the end, at most max (a daemonised child may
// hold the streams open after the process exited).
func (st *streams) drain(max time.Duration) {
	done := make(chan struct{})
	go func() { st.outputs.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(max):
	}
}

// stop ends all copying and closes the FIFOs.
func (st *streams) stop() {
	st.cancel()
	st.outputs.Wait()
	st.stdinMu.Lock()
	if st.stdin != nil {
		st.stdin.Close()
	}
	st.stdinMu.Unlock()
}
