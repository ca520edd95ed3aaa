package ttrpcserver

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
)

// The frame layout of ttrpc's PROTOCOL.md ("Message Frame").
const (
	headerLength = 10      // length, stream ID, type, flags
	maxDataSize  = 4 << 20 // the largest data length either side accepts
)

// Frame types.
const (
	frameRequest  uint8 = 0x1
	frameResponse uint8 = 0x2
	frameData     uint8 = 0x3
)

// Frame flags: request frames use remote-closed and remote-open, data
// frames remote-closed and no-data.
const (
	flagRemoteClosed uint8 = 0x1
	flagRemoteOpen   uint8 = 0x2
	flagNoData       uint8 = 0x4
)

// header is a frame's 10-byte header.
type header struct {
	length uint32 // of the data that follows
	stream uint32
	typ    uint8
	flags  uint8
}

// oversizeError is a received frame whose data exceeded maxDataSize. The
// data has been read and dropped, so the connection stays usable.
type oversizeError struct{ length uint64 }

func (e *oversizeError) Error() string {
	return fmt.Sprintf("message length %d exceed maximum message size of %d", e.length, maxDataSize)
}

// readFrame reads the next frame. A frame longer than maxDataSize is
// discarded and reported as an *oversizeError with its header, as ttrpc's
// channel.recv does; any other error leaves the stream unusable.
func readFrame(r *bufio.Reader) (header, []byte, error) {
	var b [headerLength]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return header{}, nil, err
	}
	h := header{
		length: binary.BigEndian.Uint32(b[0:4]),
		stream: binary.BigEndian.Uint32(b[4:8]),
		typ:    b[8],
		flags:  b[9],
	}
	if h.length > maxDataSize {
		if _, err := r.Discard(int(h.length)); err != nil {
			return header{}, nil, fmt.Errorf("discard oversized frame of %d bytes: %w", h.length, err)
		}
		return h, nil, &oversizeError{length: uint64(h.length)}
	}
	if h.length == 0 {
		return h, nil, nil
	}
	data := make([]byte, h.length)
	if _, err := io.ReadFull(r, data); err != nil {
		return header{}, nil, fmt.Errorf("read frame data of %d bytes: %w", h.length, err)
	}
	return h, data, nil
}

// frameWriter serializes the frames of one connection's calls.
type frameWriter struct {
	mu sync.Mutex
	bw *bufio.Writer
}

func newFrameWriter(w io.Writer) *frameWriter {
	return &frameWriter{bw: bufio.NewWriter(w)}
}

// send writes one frame and flushes it. Once a write failed, every later
// send fails too (bufio.Writer keeps the error).
func (w *frameWriter) send(stream uint32, typ, flags uint8, data []byte) error {
	if len(data) > maxDataSize {
		return &oversizeError{length: uint64(len(data))}
	}
	var b [headerLength]byte
	binary.BigEndian.PutUint32(b[0:4], uint32(len(data)))
	binary.BigEndian.PutUint32(b[4:8], stream)
	b[8] = typ
	b[9] = flags

	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.bw.Write(b[:]); err != nil {
		return err
	}
	if _, err := w.bw.Write(data); err != nil {
		return err
	}
	return w.bw.Flush()
}
