package agentv1

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// scriptedOutput is an agent whose ReadOutput answers with chunks, then end (an error
// for Recv, io.EOF for a stream that stops without the end mark). It hands out a chunk
// only against credit, as the agent does, and records what the reader did.
type scriptedOutput struct {
	AgentClient // only ReadOutput is called
	chunks      []*OutputChunk
	end         error

	first      *ReadOutputRequest
	credit     int  // granted and not yet used
	maxCredit  int  // the most credit ever outstanding
	overdrawn  bool // Recv was called with no credit left: the agent would wait forever
	closedSend bool
}

func (a *scriptedOutput) ReadOutput(context.Context) (Agent_ReadOutputClient, error) {
	return &scriptedStream{a: a}, nil
}

type scriptedStream struct {
	Agent_ReadOutputClient // only Send, Recv and CloseSend are called
	a                      *scriptedOutput
}

func (s *scriptedStream) Send(r *ReadOutputRequest) error {
	if s.a.first == nil {
		s.a.first = r
	}
	s.a.credit += int(r.GetCredit())
	s.a.maxCredit = max(s.a.maxCredit, s.a.credit)
	return nil
}

func (s *scriptedStream) Recv() (*OutputChunk, error) {
	if len(s.a.chunks) == 0 {
		return nil, s.a.end
	}
	if s.a.credit == 0 {
		s.a.overdrawn = true
		return nil, errors.New("no credit left")
	}
	s.a.credit--
	c := s.a.chunks[0]
	s.a.chunks = s.a.chunks[1:]
	return c, nil
}

func (s *scriptedStream) CloseSend() error {
	s.a.closedSend = true
	return nil
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("pipe closed") }

func TestCopyOutput(t *testing.T) {
	var many []*OutputChunk
	var manyData strings.Builder
	for i := range 100 {
		d := fmt.Sprintf("chunk %d\n", i)
		many = append(many, &OutputChunk{Data: []byte(d)})
		manyData.WriteString(d)
	}
	denied := status.Error(codes.PermissionDenied, "denied by policy rule containers[a].stdout")
	tests := []struct {
		name        string
		chunks      []*OutputChunk
		end         error
		w           io.Writer
		wantOut     string
		wantLost    []uint64
		wantDropped uint64
		wantErr     string     // "" for none
		wantIs      error      // errors.Is(err, wantIs), if not nil
		wantCode    codes.Code // status code of err, if not OK
		stream      OutputStream
		cancel      bool // the reader's context ends before the first chunk
	}{
		{name: "more chunks than the window", chunks: append(many, &OutputChunk{Eof: true}), w: &bytes.Buffer{}, wantOut: manyData.String()},
		{name: "reported losses", chunks: []*OutputChunk{
			{Data: []byte("a"), DroppedBytes: 5}, {Data: []byte("b")}, {DroppedBytes: 7, Eof: true},
		}, w: &bytes.Buffer{}, wantOut: "ab", wantLost: []uint64{5, 7}, wantDropped: 12},
		{name: "end without the end mark", chunks: []*OutputChunk{{Data: []byte("a")}}, end: io.EOF, w: &bytes.Buffer{},
			wantOut: "a", wantErr: "read stdout: unexpected EOF", wantIs: io.ErrUnexpectedEOF},
		{name: "policy denial", end: denied, w: &bytes.Buffer{}, wantErr: "read stderr", wantCode: codes.PermissionDenied,
			stream: OutputStream_OUTPUT_STREAM_STDERR},
		{name: "context ends", end: status.Error(codes.Canceled, "context canceled"), cancel: true, w: &bytes.Buffer{},
			wantErr: "read stdout", wantIs: context.Canceled},
		{name: "write fails", chunks: []*OutputChunk{{Data: []byte("a")}}, w: failingWriter{}, wantErr: "write stdout: pipe closed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := &scriptedOutput{chunks: tc.chunks, end: tc.end}
			ref := &ProcessRef{ContainerId: "c"}
			var lost []uint64
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				cancel()
			}
			dropped, err := CopyOutput(ctx, a, ref, tc.stream, tc.w, OnLoss(func(n uint64) { lost = append(lost, n) }))
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("CopyOutput = %v, want error %q", err, tc.wantErr)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("CopyOutput = %v, want it to wrap %v", err, tc.wantIs)
			}
			if tc.wantCode != codes.OK && status.Code(err) != tc.wantCode {
				t.Errorf("CopyOutput = %v, want status %v", err, tc.wantCode)
			}
			if b, ok := tc.w.(*bytes.Buffer); ok && b.String() != tc.wantOut {
				t.Errorf("CopyOutput wrote %q, want %q", b.String(), tc.wantOut)
			}
			if dropped != tc.wantDropped || !slices.Equal(lost, tc.wantLost) {
				t.Errorf("CopyOutput dropped %d, reported losses %v; want %d, %v", dropped, lost, tc.wantDropped, tc.wantLost)
			}
			if a.first.GetProcess() != ref || a.first.GetStream() != tc.stream {
				t.Errorf("first request = %v, want process %v, stream %v", a.first, ref, tc.stream)
			}
			if a.overdrawn || a.maxCredit > OutputWindow {
				t.Errorf("CopyOutput credit: ran out %v, most outstanding %d; want never out, at most %d", a.overdrawn, a.maxCredit, OutputWindow)
			}
			if !a.closedSend {
				t.Errorf("CopyOutput did not close its side of the stream")
			}
		})
	}
}
