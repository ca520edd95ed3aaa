// Package output keeps what a container process writes to stdout or stderr
// until the host reads it.
//
// A drain goroutine copies the process's pipe (or TTY master) into a Buffer
// at all times, so a process never blocks on a host that is not there.
// While no reader is attached, the buffer keeps at most its limit: older
// bytes are discarded and the count is handed to the next reader with the
// data that follows (never silent). While a reader is attached, a full
// buffer stops the drain instead, so the process blocks on write exactly
// as on a pipe and no byte is lost.
package output

import (
	"context"
	"errors"
	"io"
	"sync"
)

// DefaultLimit bounds the bytes kept per stream while nobody reads.
const DefaultLimit = 1 << 20

// ErrReaderAttached reports a second concurrent reader of one stream.
var ErrReaderAttached = errors.New("stream already has a reader")

// Chunk is what a reader receives: data starting at Offset in the stream,
// preceded by Dropped bytes that were discarded; EOF once the stream ended
// and everything before it was read.
type Chunk struct {
	Data    []byte
	Offset  uint64
	Dropped uint64
	EOF     bool
}

// Buffer is a bounded, offset-addressed byte queue with one reader.
type Buffer struct {
	limit int

	ended chan struct{} // closed by the first Close

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every state change
	data    []byte
	offset  uint64 // stream offset of data[0]
	dropped uint64 // discarded bytes not yet reported
	closed  bool
	reader  bool
}

// NewBuffer returns a buffer that keeps at most limit bytes (DefaultLimit
// if limit <= 0).
func NewBuffer(limit int) *Buffer {
	if limit <= 0 {
		limit = DefaultLimit
	}
	return &Buffer{limit: limit, ended: make(chan struct{}), changed: make(chan struct{})}
}

func (b *Buffer) notifyLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// Write appends p. With a reader attached it waits for room; without one
// it discards the oldest bytes beyond the limit. It never fails: after
// Close the bytes are counted as dropped.
func (b *Buffer) Write(p []byte) (int, error) {
	n := len(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(p) > 0 {
		room := b.limit - len(b.data)
		if room <= 0 && b.reader && !b.closed {
			b.notifyLocked() // let the reader see what is already here
			ch := b.changed
			b.mu.Unlock()
			<-ch
			b.mu.Lock()
			continue
		}
		if room <= 0 || b.closed {
			// Nobody is reading: keep the newest bytes.
			take := min(len(p), b.limit)
			over := len(b.data) + take - b.limit
			if over > 0 {
				b.discardLocked(over)
			}
			b.data = append(b.data, p[:take]...)
			p = p[take:]
			continue
		}
		take := min(len(p), room)
		b.data = append(b.data, p[:take]...)
		p = p[take:]
	}
	b.notifyLocked()
	return n, nil
}

func (b *Buffer) discardLocked(n int) {
	n = min(n, len(b.data))
	b.data = b.data[n:]
	b.offset += uint64(n)
	b.dropped += uint64(n)
	if len(b.data) == 0 {
		b.data = nil // let the backing array go
	}
}

// Close marks the end of the stream. Closing again does nothing.
func (b *Buffer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	close(b.ended)
	b.notifyLocked()
	return nil
}

// Ended is closed once the stream ended: every byte written before is in
// the buffer or counted as dropped, and the stream will not grow. Until
// then the bytes a late reader receives depend on when it attaches: what
// is still on its way to the buffer is kept for an attached reader,
// dropped beyond the limit for an absent one.
func (b *Buffer) Ended() <-chan struct{} { return b.ended }

// Attach makes the caller the stream's only reader until detach is called.
func (b *Buffer) Attach() (detach func(), err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.reader {
		return nil, ErrReaderAttached
	}
	b.reader = true
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			b.reader = false
			b.notifyLocked()
			b.mu.Unlock()
		})
	}, nil
}

// Read waits for data, loss or the end of the stream and returns at most
// max bytes (max > 0).
func (b *Buffer) Read(ctx context.Context, max int) (Chunk, error) {
	b.mu.Lock()
	for len(b.data) == 0 && b.dropped == 0 && !b.closed {
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return Chunk{}, ctx.Err()
		}
		b.mu.Lock()
	}
	defer b.mu.Unlock()
	n := min(max, len(b.data))
	c := Chunk{
		Data:    append([]byte(nil), b.data[:n]...),
		Offset:  b.offset,
		Dropped: b.dropped,
	}
	b.data = b.data[n:]
	if len(b.data) == 0 {
		b.data = nil
	}
	b.offset += uint64(n)
	b.dropped = 0
	c.EOF = b.closed && len(b.data) == 0
	b.notifyLocked()
	return c, nil
}

// Drain copies r into b until r ends, then closes b. Read errors end the
// stream too (a TTY master returns EIO once the process side closed).
func Drain(b *Buffer, r io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			fault(buf[:n])
			b.Write(buf[:n])
		}
		if err != nil {
			b.Close()
			return
		}
	}
}
