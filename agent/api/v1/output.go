package agentv1

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// OutputWindow is the credit CopyOutput grants: at most this many chunks
// are in flight, below the ttrpc client's 64-message stream buffer. Each
// time half of it has arrived CopyOutput grants that half again, so the
// agent rarely waits for a round trip.
const OutputWindow = 32

// Name is the stream's name as users know it: "stdout" (also the terminal
// of a TTY process) or "stderr".
func (s OutputStream) Name() string {
	switch s {
	case OutputStream_OUTPUT_STREAM_STDOUT:
		return "stdout"
	case OutputStream_OUTPUT_STREAM_STDERR:
		return "stderr"
	}
	return s.String()
}

// OutputOption configures CopyOutput.
type OutputOption func(*outputOptions)

type outputOptions struct {
	lost func(n uint64)
}

// OnLoss has CopyOutput call lost with the bytes the agent reports it
// discarded before a chunk (its buffer filled while nobody read), as each
// such chunk arrives.
func OnLoss(lost func(n uint64)) OutputOption {
	return func(o *outputOptions) { o.lost = lost }
}

// CopyOutput reads one output stream of a process through ReadOutput and
// writes it to w until the agent marks the end of the stream. It returns
// the number of bytes the agent discarded because nobody read them in time
// (0 when the reader was attached before the output was produced).
//
// A stream that ends without the end mark is an error wrapping
// io.ErrUnexpectedEOF; once ctx is done the error wraps ctx.Err(); the
// agent's own errors (a policy denial is PermissionDenied) keep their
// status.
func CopyOutput(ctx context.Context, c AgentClient, ref *ProcessRef, stream OutputStream, w io.Writer, opts ...OutputOption) (dropped uint64, err error) {
	var o outputOptions
	for _, opt := range opts {
		opt(&o)
	}
	name := stream.Name()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := c.ReadOutput(ctx)
	if err != nil {
		return 0, fmt.Errorf("read %s: open output stream: %w", name, err)
	}
	defer s.CloseSend()
	if err := s.Send(&ReadOutputRequest{Process: ref, Stream: stream, Credit: OutputWindow}); err != nil {
		return 0, fmt.Errorf("read %s: request output: %w", name, err)
	}
	for got := 1; ; got++ {
		chunk, err := s.Recv()
		switch {
		case ctx.Err() != nil:
			return dropped, fmt.Errorf("read %s: %w", name, ctx.Err())
		case errors.Is(err, io.EOF):
			return dropped, fmt.Errorf("read %s: %w: the agent ended the stream without its end mark", name, io.ErrUnexpectedEOF)
		case err != nil:
			return dropped, fmt.Errorf("read %s: %w", name, err)
		}
		if n := chunk.GetDroppedBytes(); n > 0 {
			dropped += n
			if o.lost != nil {
				o.lost(n)
			}
		}
		if len(chunk.GetData()) > 0 {
			if _, err := w.Write(chunk.GetData()); err != nil {
				return dropped, fmt.Errorf("write %s: %w", name, err)
			}
		}
		if chunk.GetEof() {
			return dropped, nil
		}
		if got%(OutputWindow/2) == 0 {
			if err := s.Send(&ReadOutputRequest{Credit: OutputWindow / 2}); err != nil {
				return dropped, fmt.Errorf("read %s: grant credit: %w", name, err)
			}
		}
	}
}
