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

	"confguest/hostside/launcher"
)

// stdioPaths are the FIFOs containerd gave for one process; empty means none.
type stdioPaths struct {
	Stdin, Stdout, Stderr string
	Terminal              bool
}

// outputDrain bounds how long a process's output is still copied after it exited (a
// daemonised child may hold the streams open).
const outputDrain = 5 * time.Second

// streams connects one process's stdio to containerd's FIFOs; the launcher's Streams does
// the copying.
type streams struct {
	ctx context.Context
	st  *launcher.Streams

	mu    sync.Mutex
	fifos []io.Closer
}

// openStreams opens the FIFOs of process ref and starts copying. ctx bounds the copying;
// it should live as long as the process.
func openStreams(ctx context.Context, g *launcher.Guest, ref launcher.ProcessRef, p stdioPaths) (*streams, error) {
	s := &streams{ctx: ctx}
	var stdio launcher.IO
	outs := []struct {
		path, name string
		w          *io.Writer
	}{{p.Stdout, "stdout", &stdio.Stdout}}
	if !p.Terminal {
		outs = append(outs, struct {
			path, name string
			w          *io.Writer
		}{p.Stderr, "stderr", &stdio.Stderr})
	}
	for _, o := range outs {
		if o.path == "" {
			continue
		}
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		w, err := fifo.OpenFifo(octx, o.path, syscall.O_WRONLY, 0)
		cancel()
		if err != nil {
			s.closeFIFOs()
			return nil, fmt.Errorf("open %s FIFO %s: %w", o.name, o.path, err)
		}
		s.fifos = append(s.fifos, w)
		*o.w = w
	}
	if p.Stdin != "" {
		r, err := fifo.OpenFifo(ctx, p.Stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			s.closeFIFOs()
			return nil, fmt.Errorf("open stdin FIFO %s: %w", p.Stdin, err)
		}
		s.fifos, stdio.Stdin = append(s.fifos, r), r
	}
	stdio.Warn = logWriter{ctx}
	s.st = g.Stream(ctx, ref, stdio)
	return s, nil
}

func (s *streams) closeFIFOs() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.fifos {
		c.Close()
	}
	s.fifos = nil
}

// closeStdin is CloseIO: what the client wrote before closing is delivered, then the
// process's stdin is closed. A client that keeps its end open gets a second's grace.
func (s *streams) closeStdin(ctx context.Context) { s.st.CloseStdin(ctx) }

// drain copies the output to the end (at most outputDrain), then stops copying and closes
// the FIFOs.
func (s *streams) drain() {
	if err := s.st.Drain(s.ctx, outputDrain); err != nil && s.ctx.Err() == nil {
		log.G(s.ctx).WithError(err).Warn("copy output")
	}
	s.closeFIFOs()
}

// stop ends all copying and closes the FIFOs.
func (s *streams) stop() {
	s.st.Stop()
	s.closeFIFOs()
}
