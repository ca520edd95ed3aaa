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
//
// Bytes handed to a reader stay in the buffer until the reader acknowledges
// them (Ack) or the room is needed for bytes nobody was handed yet: a reader
// whose connection dropped with chunks in flight attaches again at the offset
// it holds (Attach with a resume offset) and gets them again. Within the
// limit, counting the bytes in flight and those written while no reader was
// attached, a dropped connection loses nothing; beyond it, the resumed reader
// is told exactly how many bytes it missed.
package output

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// DefaultLimit bounds the bytes kept per stream while nobody reads.
const DefaultLimit = 1 << 20

// ErrReaderAttached reports a second concurrent reader of one stream.
var ErrReaderAttached = errors.New("stream already has a reader")

// ErrBeyondSent reports a resume or acknowledged offset past the bytes the
// stream handed to readers: the reader cannot hold them.
var ErrBeyondSent = errors.New("offset beyond the bytes sent")

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
	data    []byte        // the stream from offset on: handed out (up to sent), then not yet
	offset  uint64        // stream offset of data[0]
	sent    uint64        // stream offset up to which readers were handed data; offset <= sent
	dropped uint64        // discarded bytes nobody was handed, not yet reported
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

// end is the stream offset just past the last byte written.
func (b *Buffer) end() uint64 { return b.offset + uint64(len(b.data)) }

// Write appends p. It keeps the newest limit bytes no reader acknowledged:
// bytes a reader was handed make room first (they are kept only for a resume
// and not counted), then the oldest bytes nobody was handed (counted as
// dropped). While a reader is attached and has bytes still to take, a full
// buffer makes Write wait for it instead. It never fails.
func (b *Buffer) Write(p []byte) (int, error) {
	n := len(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(p) > 0 {
		unsent := int(b.end() - b.sent)
		room := b.limit - len(b.data)
		var take int
		switch {
		case !b.reader || b.closed:
			take = min(len(p), b.limit) // nobody reads: keep the newest bytes
		case unsent > 0 && room <= 0:
			b.notifyLocked() // let the reader see what is already here
			ch := b.changed
			b.mu.Unlock()
			<-ch
			b.mu.Lock()
			continue
		case unsent > 0:
			take = min(len(p), room)
		default:
			// The reader was handed everything: what it has not acknowledged
			// makes room.
			take = min(len(p), b.limit)
		}
		b.makeRoomLocked(take)
		b.data = append(b.data, p[:take]...)
		p = p[take:]
	}
	b.notifyLocked()
	return n, nil
}

// makeRoomLocked frees room for n more bytes within the limit: first the
// oldest bytes readers were handed, uncounted (a reader resuming before them
// is told it missed them), then the oldest nobody was handed, counted.
func (b *Buffer) makeRoomLocked(n int) {
	over := len(b.data) + n - b.limit
	if over <= 0 {
		return
	}
	handed := int(b.sent - b.offset)
	b.forgetLocked(b.offset + uint64(min(over, handed)))
	if rest := over - min(over, handed); rest > 0 {
		rest = min(rest, len(b.data))
		b.data = b.data[rest:]
		b.offset += uint64(rest)
		b.dropped += uint64(rest)
		b.sent = b.offset
	}
	if len(b.data) == 0 {
		b.data = nil // let the backing array go
	}
}

// forgetLocked drops the bytes before stream offset off that readers were
// handed (never past sent).
func (b *Buffer) forgetLocked(off uint64) {
	off = min(off, b.sent)
	if off <= b.offset {
		return
	}
	b.data = b.data[off-b.offset:]
	b.offset = off
	if len(b.data) == 0 {
		b.data = nil
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
// A fresh reader (resume nil) starts after everything earlier readers were
// handed. A reader that already holds the stream up to *resume (its
// connection dropped) starts there: it is handed again what the buffer still
// keeps after that offset, and told as dropped what it no longer keeps. A
// resume offset past the bytes handed out wraps ErrBeyondSent.
func (b *Buffer) Attach(resume *uint64) (detach func(), err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.reader {
		return nil, ErrReaderAttached
	}
	if resume != nil {
		r := *resume
		if r > b.sent {
			return nil, fmt.Errorf("resume at %d: %w (%d)", r, ErrBeyondSent, b.sent)
		}
		if r < b.offset {
			b.dropped, b.sent = b.offset-r, b.offset
		} else {
			b.dropped, b.sent = 0, r
		}
	}
	b.reader = true
	b.notifyLocked()
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

// Ack tells the buffer the reader holds every byte before stream offset off:
// they need not be kept for a resume. An offset past the bytes handed out
// wraps ErrBeyondSent.
func (b *Buffer) Ack(off uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if off > b.sent {
		return fmt.Errorf("acknowledged %d: %w (%d)", off, ErrBeyondSent, b.sent)
	}
	b.forgetLocked(off)
	b.notifyLocked()
	return nil
}

// Read waits for data, loss or the end of the stream and returns at most
// max bytes (max > 0).
func (b *Buffer) Read(ctx context.Context, max int) (Chunk, error) {
	b.mu.Lock()
	for b.sent == b.end() && b.dropped == 0 && !b.closed {
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
	from := b.sent - b.offset
	n := min(max, len(b.data)-int(from))
	c := Chunk{
		Data:    append([]byte(nil), b.data[from:from+uint64(n)]...),
		Offset:  b.sent,
		Dropped: b.dropped,
	}
	b.sent += uint64(n)
	b.dropped = 0
	c.EOF = b.closed && b.sent == b.end()
	b.notifyLocked()
	return c, nil
}

// Drain's reads: the first is of minRead bytes, and each read that fills its buffer
// doubles it, up to maxRead. A drain runs for each stream of every process, and most
// processes write little: a fixed 32 KiB buffer was most of the agent's garbage per
// container cycle.
const (
	minRead = 512
	maxRead = 32 << 10
)

// Drain copies r into b until r ends, then closes b. Read errors end the
// stream too (a TTY master returns EIO once the process side closed).
func Drain(b *Buffer, r io.Reader) {
	buf := make([]byte, minRead)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			fault(buf[:n])
			b.Write(buf[:n])
			if n == len(buf) && len(buf) < maxRead {
				buf = make([]byte, 2*len(buf))
			}
		}
		if err != nil {
			b.Close()
			return
		}
	}
}
