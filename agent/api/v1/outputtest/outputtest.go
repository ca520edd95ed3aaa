// Package outputtest drops an output stream's connection in the middle and
// resumes it, for the agent's tests (a unix socket) and the guest's (vsock).
package outputtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentv1 "confguest/agent/api/v1"
)

// Resumed is what DropAndResume saw.
type Resumed struct {
	Before  []byte // received on the first connection, up to its drop
	After   []byte // received on the second, resumed at len(Before)
	Dropped uint64 // the bytes the agent reported it no longer kept
	At      uint64 // ResumeAt's offset at the end
}

// DropAndResume reads the stdout of ref on a connection of its own (dial),
// taking each chunk slowly so that many are in flight, and closes that
// connection once it holds dropAfter bytes. The process must exist; start
// starts it once the reader is on its way; exited waits for its end, so that
// the rest is written while nobody reads. Then it resumes on client, retrying while the
// agent has not yet seen the first reader go (FailedPrecondition).
func DropAndResume(ctx context.Context, dial func() (net.Conn, error), client agentv1.AgentClient, ref *agentv1.ProcessRef,
	dropAfter int, start, exited func() error) (Resumed, error) {
	var r Resumed
	conn, err := dial()
	if err != nil {
		return r, fmt.Errorf("dial the first connection: %w", err)
	}
	first := ttrpc.NewClient(conn)
	defer first.Close()
	var got bytes.Buffer
	done := make(chan error, 1)
	go func() {
		_, err := agentv1.CopyOutput(ctx, agentv1.NewAgentClient(first), ref, agentv1.OutputStream_OUTPUT_STREAM_STDOUT,
			writerFunc(func(p []byte) (int, error) {
				time.Sleep(5 * time.Millisecond)
				if got.Len() >= dropAfter {
					conn.Close() // the connection drops
				}
				return got.Write(p)
			}), agentv1.ResumeAt(&r.At))
		done <- err
	}()
	if err := start(); err != nil {
		return r, err
	}
	err = <-done
	switch {
	case err == nil:
		return r, fmt.Errorf("CopyOutput on the dropped connection ended without an error after %d bytes", got.Len())
	case got.Len() < dropAfter:
		return r, fmt.Errorf("the first reader ended after %d bytes, before its connection was dropped: %w", got.Len(), err)
	}
	r.Before = got.Bytes()
	if r.At != uint64(len(r.Before)) {
		return r, fmt.Errorf("ResumeAt offset %d after the drop, want the %d bytes written", r.At, len(r.Before))
	}
	if err := exited(); err != nil {
		return r, err
	}
	var rest bytes.Buffer
	deadline := time.Now().Add(10 * time.Second)
	for {
		rest.Reset()
		at := uint64(len(r.Before))
		r.Dropped, err = agentv1.CopyOutput(ctx, client, ref, agentv1.OutputStream_OUTPUT_STREAM_STDOUT, &rest, agentv1.ResumeAt(&at))
		r.At = at
		if status.Code(err) != codes.FailedPrecondition || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.After = rest.Bytes()
	if err != nil {
		return r, fmt.Errorf("CopyOutput resumed at %d: %w", len(r.Before), err)
	}
	return r, nil
}

// Check reports how r differs from a stream of want whose resumption should
// (lost) or should not have lost bytes: what was received must be want's
// exact beginning and end, and received plus reported lost all of it.
func (r Resumed) Check(want []byte, lost bool) error {
	total := uint64(len(want))
	switch {
	case !bytes.Equal(r.Before, want[:min(len(r.Before), len(want))]):
		return fmt.Errorf("the %d bytes before the drop are not the stream's beginning", len(r.Before))
	case uint64(len(r.Before))+r.Dropped+uint64(len(r.After)) != total || r.At != total:
		return fmt.Errorf("resumed at %d: %d bytes and %d reported lost (ResumeAt offset %d), want them to add up to the %d-byte stream", len(r.Before), len(r.After), r.Dropped, r.At, total)
	case !bytes.Equal(r.After, want[total-uint64(len(r.After)):]):
		return fmt.Errorf("the %d bytes after the resume are not the stream's end", len(r.After))
	case (r.Dropped > 0) != lost:
		return fmt.Errorf("resumed with %d bytes reported lost, want loss %v", r.Dropped, lost)
	}
	return nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
