package output

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
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
	detach, err := b.Attach()
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	if _, err := b.Attach(); !errors.Is(err, ErrReaderAttached) {
		t.Fatalf("second Attach = %v, want %v", err, ErrReaderAttached)
	}
	detach()
	if _, err := b.Attach(); err != nil {
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
	detach, err := b.Attach()
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

// Detaching the reader must release a writer that waits for room.
func TestBufferDetachReleasesWriter(t *testing.T) {
	b := NewBuffer(4)
	detach, _ := b.Attach()
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
