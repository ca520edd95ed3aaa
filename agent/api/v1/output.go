package agentv1

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// OutputWindow is the credit CopyOutput keeps granted: at most this many
// chunks are in flight, below the ttrpc client's 64-message stream buffer.
const OutputWindow = 32

// Name is the stream's name as users know it: "stdout" (also the terminal of a TTY
// process) or "stderr".
func (s OutputStream) Name() string {
	switch s {
	case OutputStream_OUTPUT_STREAM_STDOUT:
		return "stdout"
	case OutputStream_OUTPUT_STREAM_STDERR:
		return "stderr"
	}
	return s.String()
}

// CopyOutput reads one output stream of a process through ReadOutput and
// writes it to w until the process closes it. It returns the number of
// bytes the agent discarded because nobody read them in time (0 when the
// reader was attached before the output was produced).
func CopyOutput(ctx context.Context, c AgentClient, ref *ProcessRef, stream OutputStream, w io.Writer) (dropped uint64, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := c.ReadOutput(ctx)
	if err != nil {
		return 0, fmt.Errorf("open output stream: %w", err)
	}
	if err := s.Send(&ReadOutputRequest{Process: ref, Stream: stream, Credit: OutputWindow}); err != nil {
		return 0, fmt.Errorf("request output: %w", err)
	}
	for {
		chunk, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return dropped, fmt.Errorf("output stream ended without end-of-file")
		}
		if err != nil {
			return dropped, fmt.Errorf("read output: %w", err)
		}
		dropped += chunk.GetDroppedBytes()
		if _, err := w.Write(chunk.GetData()); err != nil {
			return dropped, fmt.Errorf("write output: %w", err)
		}
		if chunk.GetEof() {
			return dropped, s.CloseSend()
		}
		if err := s.Send(&ReadOutputRequest{Credit: 1}); err != nil {
			return dropped, fmt.Errorf("grant output credit: %w", err)
		}
	}
}
