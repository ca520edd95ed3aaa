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
	acks       []uint64 // received of the later requests
	credit     int      // granted and not yet used
	maxCredit  int      // the most credit ever outstanding
	overdrawn  bool     // Recv was called with no credit left: the agent would wait forever
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
	} else {
		s.a.acks = append(s.a.acks, r.GetReceived())
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
		many = append(many, &OutputChunk{Data: []byte(d), Offset: uint64(manyData.Len())})
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
		cancel      bool   // the reader's context ends before the first chunk
		resumeAt    uint64 // > 0: CopyOutput resumes there (ResumeAt)
		wantAt      uint64 // ResumeAt's offset afterwards
		wantAcks    bool   // the credit requests acknowledge what was written
	}{
		{name: "more chunks than the window", chunks: append(many, &OutputChunk{Offset: uint64(manyData.Len()), Eof: true}), w: &bytes.Buffer{},
			wantOut: manyData.String(), wantAcks: true},
		{name: "reported losses", chunks: []*OutputChunk{
			{Data: []byte("a"), Offset: 5, DroppedBytes: 5}, {Data: []byte("b"), Offset: 6}, {Offset: 14, DroppedBytes: 7, Eof: true},
		}, w: &bytes.Buffer{}, wantOut: "ab", wantLost: []uint64{5, 7}, wantDropped: 12},
		{name: "a gap not reported lost", chunks: []*OutputChunk{{Data: []byte("a")}, {Data: []byte("b"), Offset: 5}}, w: &bytes.Buffer{},
			wantOut: "a", wantErr: "read stdout: the agent sent offset 5 after 1 bytes and 0 reported lost", wantIs: ErrStreamGap},
		{name: "resumed", resumeAt: 10, chunks: []*OutputChunk{
			{Data: []byte("xy"), Offset: 10}, {Data: []byte("z"), Offset: 14, DroppedBytes: 2, Eof: true},
		}, w: &bytes.Buffer{}, wantOut: "xyz", wantLost: []uint64{2}, wantDropped: 2, wantAt: 15},
		{name: "resumed, but the agent starts elsewhere", resumeAt: 10, chunks: []*OutputChunk{{Data: []byte("xy"), Offset: 12}}, w: &bytes.Buffer{},
			wantErr: "the agent sent offset 12 after 10 bytes", wantIs: ErrStreamGap, wantAt: 10},
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
			opts := []OutputOption{OnLoss(func(n uint64) { lost = append(lost, n) })}
			at := tc.resumeAt
			if tc.resumeAt > 0 {
				opts = append(opts, ResumeAt(&at))
			}
			dropped, err := CopyOutput(ctx, a, ref, tc.stream, tc.w, opts...)
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
			if a.first.GetProcess() != ref || a.first.GetStream() != tc.stream || a.first.GetResume() != (tc.resumeAt > 0) || a.first.GetReceived() != tc.resumeAt {
				t.Errorf("first request = %v, want process %v, stream %v, resume at %d", a.first, ref, tc.stream, tc.resumeAt)
			}
			if tc.resumeAt > 0 && at != tc.wantAt {
				t.Errorf("ResumeAt offset after CopyOutput = %d, want %d", at, tc.wantAt)
			}
			// Each acknowledgement is what w had been given by then.
			if tc.wantAcks && (len(a.acks) == 0 || !slices.IsSorted(a.acks) || a.acks[0] == 0 || a.acks[len(a.acks)-1] > uint64(len(tc.wantOut))) {
				t.Errorf("CopyOutput acknowledged %v, want increasing offsets within the %d bytes written", a.acks, len(tc.wantOut))
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
