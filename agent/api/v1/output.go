package agentv1

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// ErrStreamGap reports an output chunk that does not continue the stream
// where the previous one ended (or the resume offset), with no loss
// reported for the difference.
var ErrStreamGap = errors.New("output stream skipped bytes it did not report lost")

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
	at   *uint64
}

// OnLoss has CopyOutput call lost with the bytes the agent reports it
// discarded before a chunk (its buffer filled while nobody read), as each
// such chunk arrives.
func OnLoss(lost func(n uint64)) OutputOption {
	return func(o *outputOptions) { o.lost = lost }
}

// ResumeAt has CopyOutput resume the stream at *at, the offset up to which
// the caller already wrote it (0: from the start), and keep *at at the
// offset just past the last byte it wrote. A caller whose connection
// dropped calls CopyOutput again on a new connection with the same at: the
// agent sends again the bytes it sent after *at, and the bytes it no longer
// keeps (its buffer's limit) are reported as lost.
func ResumeAt(at *uint64) OutputOption {
	return func(o *outputOptions) { o.at = at }
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
	first := &ReadOutputRequest{Process: ref, Stream: stream, Credit: OutputWindow}
	next := uint64(0) // the stream offset just past what w was given
	if o.at != nil {
		first.Resume, first.Received, next = true, *o.at, *o.at
	}
	if err := s.Send(first); err != nil {
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
		// Each chunk continues the stream where the last one (or the resume
		// offset) ended, after the bytes reported lost; a fresh reader takes
		// its start from the first chunk.
		if (got > 1 || o.at != nil) && chunk.GetOffset() != next+chunk.GetDroppedBytes() {
			return dropped, fmt.Errorf("read %s: the agent sent offset %d after %d bytes and %d reported lost: %w", name, chunk.GetOffset(), next, chunk.GetDroppedBytes(), ErrStreamGap)
		}
		if len(chunk.GetData()) > 0 {
			if _, err := w.Write(chunk.GetData()); err != nil {
				return dropped, fmt.Errorf("write %s: %w", name, err)
			}
		}
		next = chunk.GetOffset() + uint64(len(chunk.GetData()))
		if o.at != nil {
			*o.at = next
		}
		if chunk.GetEof() {
			return dropped, nil
		}
		if got%(OutputWindow/2) == 0 {
			// The credit request also acknowledges what w has.
			if err := s.Send(&ReadOutputRequest{Credit: OutputWindow / 2, Received: next}); err != nil {
				return dropped, fmt.Errorf("read %s: grant credit: %w", name, err)
			}
		}
	}
}
