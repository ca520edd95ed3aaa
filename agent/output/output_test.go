package output

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"slices"
	"testing"
	"time"
)

func TestBufferWithoutReaderDropsOldestAndReportsIt(t *testing.T) {
	tests := []struct {
		name        string
		limit       int
		writes      []string
		wantData    string
		wantOffset  uint64
		wantDropped uint64
	}{
		{"fits", 8, []string{"abc", "def"}, "abcdef", 0, 0},
		{"exactly full", 6, []string{"abc", "def"}, "abcdef", 0, 0},
		{"overflow by two", 4, []string{"abc", "def"}, "cdef", 2, 2},
		{"single write larger than limit", 3, []string{"abcdefgh"}, "fgh", 5, 5},
		{"many small writes", 2, []string{"a", "b", "c", "d", "e"}, "de", 3, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBuffer(tc.limit)
			for _, w := range tc.writes {
				b.Write([]byte(w))
			}
			c, err := b.Read(context.Background(), 100)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if string(c.Data) != tc.wantData || c.Offset != tc.wantOffset || c.Dropped != tc.wantDropped {
				t.Errorf("Read after %q = {%q off %d dropped %d}, want {%q off %d dropped %d}",
					tc.writes, c.Data, c.Offset, c.Dropped, tc.wantData, tc.wantOffset, tc.wantDropped)
			}
		})
	}
}

func TestBufferEOFAfterLastData(t *testing.T) {
	b := NewBuffer(16)
	b.Write([]byte("hello"))
	b.Close()
	c, err := b.Read(context.Background(), 3)
	if err != nil || string(c.Data) != "hel" || c.EOF {
		t.Fatalf("first Read = %q eof %v err %v, want \"hel\" eof false", c.Data, c.EOF, err)
	}
	c, err = b.Read(context.Background(), 3)
	if err != nil || string(c.Data) != "lo" || !c.EOF || c.Offset != 3 {
		t.Fatalf("second Read = %q off %d eof %v err %v, want \"lo\" off 3 eof true", c.Data, c.Offset, c.EOF, err)
	}
}

func TestBufferReadHonoursContext(t *testing.T) {
	b := NewBuffer(16)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := b.Read(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Read on empty buffer = %v, want %v", err, context.DeadlineExceeded)
	}
}

func TestBufferSecondReaderRefused(t *testing.T) {
	b := NewBuffer(16)
	detach, err := b.Attach(nil)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	if _, err := b.Attach(nil); !errors.Is(err, ErrReaderAttached) {
		t.Fatalf("second Attach = %v, want %v", err, ErrReaderAttached)
	}
	detach()
	if _, err := b.Attach(nil); err != nil {
		t.Fatalf("Attach after detach = %v, want nil", err)
	}
}

// With a reader attached nothing is lost, however small the buffer: the
// writer waits for the reader.
func TestBufferAttachedReaderLosesNothing(t *testing.T) {
	src := make([]byte, 3<<20)
	for i := range src {
		src[i] = byte(i * 7)
	}
	b := NewBuffer(4096)
	detach, err := b.Attach(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer detach()
	go Drain(b, bytes.NewReader(src))
	h := sha256.New()
	var got uint64
	for {
		c, err := b.Read(context.Background(), 1000)
		if err != nil {
			t.Fatal(err)
		}
		if c.Dropped != 0 || c.Offset != got {
			t.Fatalf("Read at %d = offset %d dropped %d, want offset %d dropped 0", got, c.Offset, c.Dropped, got)
		}
		h.Write(c.Data)
		got += uint64(len(c.Data))
		if c.EOF {
			break
		}
	}
	want := sha256.Sum256(src)
	if got != uint64(len(src)) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("read %d bytes with sha256 %x, want %d bytes %x", got, h.Sum(nil), len(src), want)
	}
}

// sizeReader records the size of each buffer Read is given and fills it only when full is set.
type sizeReader struct {
	left  int
	full  bool
	sizes []int
}

func (r *sizeReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	r.sizes = append(r.sizes, len(p))
	n := min(len(p), r.left)
	if !r.full {
		n = min(n, 100)
	}
	r.left -= n
	return n, nil
}

// TestDrainReadSize: Drain reads a quiet stream with its smallest buffer and doubles it
// while reads fill it, up to maxRead; every byte reaches the buffer.
func TestDrainReadSize(t *testing.T) {
	quiet := &sizeReader{left: 1000}
	b := NewBuffer(0)
	Drain(b, quiet)
	if slices.ContainsFunc(quiet.sizes, func(n int) bool { return n != minRead }) {
		t.Errorf("reads of a stream that never fills them got buffers of %v bytes, want %d each", quiet.sizes, minRead)
	}
	loud := &sizeReader{left: 1 << 20, full: true}
	b = NewBuffer(2 << 20)
	Drain(b, loud)
	want := []int{512, 1 << 10, 2 << 10, 4 << 10, 8 << 10, 16 << 10, 32 << 10, 32 << 10}
	if len(loud.sizes) < len(want) || !slices.Equal(loud.sizes[:len(want)], want) || slices.Max(loud.sizes) != maxRead {
		t.Errorf("reads of a stream that fills them got buffers of %v bytes, want %v then %d", loud.sizes[:min(len(loud.sizes), 10)], want, maxRead)
	}
	if c, err := b.Read(context.Background(), 4<<20); err != nil || len(c.Data) != 1<<20 || !c.EOF {
		t.Errorf("the buffer after draining 1 MiB: %d bytes, EOF %v, %v; want all of it and EOF", len(c.Data), c.EOF, err)
	}
}

// Detaching the reader must release a writer that waits for room.
func TestBufferDetachReleasesWriter(t *testing.T) {
	b := NewBuffer(4)
	detach, _ := b.Attach(nil)
	done := make(chan struct{})
	go func() {
		b.Write([]byte("0123456789"))
		close(done)
	}()
	time.Sleep(10 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("Write returned with a reader attached and a full buffer")
	default:
	}
	detach()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Write still blocked after the reader detached")
	}
	c, _ := b.Read(context.Background(), 100)
	if string(c.Data) != "6789" || c.Dropped != 6 {
		t.Fatalf("Read = %q dropped %d, want \"6789\" dropped 6", c.Data, c.Dropped)
	}
}

var _ io.Writer = (*Buffer)(nil)

func TestBufferEndedOnFirstClose(t *testing.T) {
	b := NewBuffer(16)
	select {
	case <-b.Ended():
		t.Fatal("Ended before Close")
	default:
	}
	b.Write([]byte("x"))
	b.Close()
	b.Close() // the drain and the teardown both close
	select {
	case <-b.Ended():
	default:
		t.Fatal("Ended still open after Close")
	}
}

// A reader whose connection dropped attaches again at the offset it holds:
// it gets again what the buffer still keeps after it, and is told exactly
// what it no longer keeps.
func TestBufferResume(t *testing.T) {
	u := func(n uint64) *uint64 { return &n }
	tests := []struct {
		name   string
		limit  int
		before string // written while the first reader is attached
		handed int    // bytes the first reader is handed, in chunks of at most 4
		acked  uint64 // what the first reader acknowledged
		after  string // written once it is gone
		resume *uint64
		want   Chunk
	}{
		{"in flight kept", 16, "0123456789", 8, 0, "abc", u(4), Chunk{Data: []byte("456789abc"), Offset: 4}},
		{"acknowledged, then resumed there", 16, "0123456789", 8, 4, "abc", u(4), Chunk{Data: []byte("456789abc"), Offset: 4}},
		{"resumed at everything handed", 16, "0123456789", 8, 0, "", u(8), Chunk{Data: []byte("89"), Offset: 8}},
		{"beyond the limit: told what it missed", 8, "01234567", 8, 0, "abcdef", u(2), Chunk{Data: []byte("67abcdef"), Offset: 6, Dropped: 4}},
		{"acknowledged bytes are gone", 8, "01234567", 8, 8, "", u(4), Chunk{Offset: 8, Dropped: 4}},
		{"fresh reader starts after what was handed", 16, "abcd", 2, 0, "", nil, Chunk{Data: []byte("cd"), Offset: 2}},
		{"fresh reader told of bytes nobody was handed", 4, "ab", 2, 0, "cdefgh", nil, Chunk{Data: []byte("efgh"), Offset: 4, Dropped: 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBuffer(tc.limit)
			detach, err := b.Attach(nil)
			if err != nil {
				t.Fatal(err)
			}
			b.Write([]byte(tc.before))
			for got := 0; got < tc.handed; {
				c, err := b.Read(context.Background(), min(4, tc.handed-got))
				if err != nil {
					t.Fatal(err)
				}
				got += len(c.Data)
			}
			if err := b.Ack(tc.acked); err != nil {
				t.Fatalf("Ack(%d) = %v", tc.acked, err)
			}
			detach()
			b.Write([]byte(tc.after))
			b.Close()
			if _, err := b.Attach(tc.resume); err != nil {
				t.Fatalf("Attach(resume) = %v", err)
			}
			c, err := b.Read(context.Background(), 100)
			if err != nil {
				t.Fatal(err)
			}
			if string(c.Data) != string(tc.want.Data) || c.Offset != tc.want.Offset || c.Dropped != tc.want.Dropped || !c.EOF {
				t.Errorf("Read after resume = {%q off %d dropped %d eof %v}, want {%q off %d dropped %d eof true}",
					c.Data, c.Offset, c.Dropped, c.EOF, tc.want.Data, tc.want.Offset, tc.want.Dropped)
			}
		})
	}
}

// A reader cannot acknowledge or resume at bytes it was never handed.
func TestBufferOffsetsBeyondSentRefused(t *testing.T) {
	b := NewBuffer(16)
	b.Write([]byte("0123456789"))
	detach, err := b.Attach(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Read(context.Background(), 4); err != nil {
		t.Fatal(err)
	}
	if err := b.Ack(5); !errors.Is(err, ErrBeyondSent) {
		t.Errorf("Ack(5) after 4 bytes handed = %v, want %v", err, ErrBeyondSent)
	}
	detach()
	if _, err := b.Attach(func() *uint64 { n := uint64(5); return &n }()); !errors.Is(err, ErrBeyondSent) {
		t.Errorf("Attach(resume 5) after 4 bytes handed = %v, want %v", err, ErrBeyondSent)
	}
	if _, err := b.Attach(nil); err != nil {
		t.Errorf("Attach(nil) after a refused resume = %v: the refusal must not leave the stream attached", err)
	}
}
