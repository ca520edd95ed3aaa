package ttrpcserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"syscall"
	"time"
)

// conn is one client connection: a reader goroutine that reads frames and
// starts calls, each call in its own goroutine, and a writer they share.
type conn struct {
	srv    *Server
	nc     net.Conn
	w      *frameWriter
	ctx    context.Context // parent of the calls' contexts
	cancel context.CancelFunc

	mu      sync.Mutex
	active  int              // calls whose goroutine has not finished
	calls   map[uint32]*call // calls not yet ended, by stream ID
	closing bool             // no call may start any more

	lastID    uint32 // the last request's stream ID; reader only
	closeOnce sync.Once
}

// call is one unary or streaming call.
type call struct {
	id     uint32
	ctx    context.Context
	cancel context.CancelFunc
	stream *serverStream // nil for a unary call
	ended  bool          // its final frame was sent or is being sent; under conn.mu
}

func newConn(ctx context.Context, srv *Server, nc net.Conn) *conn {
	ctx, cancel := context.WithCancel(ctx)
	return &conn{
		srv:    srv,
		nc:     nc,
		w:      newFrameWriter(nc),
		ctx:    ctx,
		cancel: cancel,
		calls:  make(map[uint32]*call),
	}
}

// serve reads frames until the connection fails or closes, then closes it,
// which cancels the calls in flight. Should reading a frame ever panic, the
// connection closes and the process lives on.
func (c *conn) serve() {
	defer c.srv.removeConn(c)
	defer c.close()
	defer func() {
		if r := recover(); r != nil {
			c.srv.log.ErrorContext(c.ctx, "ttrpc: connection reader panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	r := bufio.NewReader(c.nc)
	for {
		h, data, err := readFrame(r)
		var tooBig *oversizeError
		if errors.As(err, &tooBig) {
			// As ttrpc: answer the frame's stream, keep the connection.
			c.sendStatus(h.stream, ResourceExhausted, tooBig.Error())
			continue
		}
		if err != nil {
			c.logReadError(err)
			return
		}
		c.handleFrame(h, data)
	}
}

func (c *conn) logReadError(err error) {
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	if closing || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
		return
	}
	c.srv.log.DebugContext(c.ctx, "ttrpc: read from client", "err", err)
}

// handleFrame acts on one frame as ttrpc's server does: it refuses even
// stream IDs, starts calls, delivers stream data, and ignores frame types
// it does not know (for future compatibility).
func (c *conn) handleFrame(h header, data []byte) {
	if h.stream%2 != 1 {
		c.sendStatus(h.stream, InvalidArgument, "StreamID must be odd for client initiated streams")
		return
	}
	switch h.typ {
	case frameRequest:
		c.handleRequest(h, data)
	case frameData:
		c.handleData(h, data)
	}
}

func (c *conn) handleRequest(h header, data []byte) {
	if h.stream <= c.lastID {
		c.sendStatus(h.stream, InvalidArgument, "StreamID cannot be re-used and must increment")
		return
	}
	c.lastID = h.stream
	req, err := decodeRequest(data)
	if err != nil {
		c.sendStatus(h.stream, InvalidArgument, "unmarshal request error: "+err.Error())
		return
	}
	method, stream, err := c.srv.lookup(req.service, req.method)
	if err != nil {
		st, _ := StatusOf(err)
		c.sendStatus(h.stream, st.Code, st.Message)
		return
	}
	cl := c.newCall(h.stream, req.timeoutNano)
	if method != nil {
		c.startUnary(cl, req, method)
		return
	}
	c.startStream(cl, req, stream, h.flags)
}

// newCall makes a call's context: the connection's, with the request's
// timeout if it has one (ttrpc applies any non-zero timeout_nano, so a
// negative one has already expired).
func (c *conn) newCall(id uint32, timeoutNano int64) *call {
	cl := &call{id: id}
	if timeoutNano != 0 {
		cl.ctx, cl.cancel = context.WithTimeout(c.ctx, time.Duration(timeoutNano))
	} else {
		cl.ctx, cl.cancel = context.WithCancel(c.ctx)
	}
	return cl
}

// begin registers cl as in flight; false when the connection is closing.
func (c *conn) begin(cl *call) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	c.active++
	c.calls[cl.id] = cl
	return true
}

// finish ends cl's goroutine's part: the connection is idle when none is
// left.
func (c *conn) finish(cl *call) {
	cl.cancel()
	c.mu.Lock()
	c.active--
	idle := c.active == 0
	c.mu.Unlock()
	if idle {
		c.srv.notify()
	}
}

// end marks cl ended, so that it takes no more data and sends no more
// frames; true for the one caller that ended it, who sends its last frame.
func (c *conn) end(cl *call) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl.ended {
		return false
	}
	cl.ended = true
	delete(c.calls, cl.id)
	return true
}

// isEnded reports whether cl ended.
func (c *conn) isEnded(cl *call) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return cl.ended
}

func (c *conn) handleData(h header, data []byte) {
	c.mu.Lock()
	cl := c.calls[h.stream]
	c.mu.Unlock()
	if cl == nil {
		c.sendStatus(h.stream, InvalidArgument, "StreamID is no longer active")
		return
	}
	if cl.stream == nil {
		// ttrpc's server dereferences a nil stream here and crashes;
		// PROTOCOL.md does not allow data on a unary stream.
		c.fail(cl, InvalidArgument, "data message on unary stream %d", h.stream)
		return
	}
	if h.flags&flagNoData == 0 {
		if err := cl.stream.deliver(data); err != nil {
			c.fail(cl, InvalidArgument, "data handling error: %v", err)
			return
		}
	}
	if h.flags&flagRemoteClosed != 0 {
		cl.stream.closeRecv()
		if len(data) > 0 {
			c.fail(cl, InvalidArgument, "data close message cannot include data")
		}
	}
}

// fail ends cl with a status the reader chose, and cancels its handler,
// whose own result is then dropped.
func (c *conn) fail(cl *call, code Code, format string, args ...any) {
	if !c.end(cl) {
		return
	}
	cl.cancel()
	c.sendStatus(cl.id, code, fmt.Sprintf(format, args...))
}

// sendStatus sends a Response with a status and no payload.
func (c *conn) sendStatus(id uint32, code Code, message string) {
	c.send(id, frameResponse, 0, encodeResponse(code, message, nil))
}

// send writes a frame; a connection that cannot be written is closed.
func (c *conn) send(id uint32, typ, flags uint8, data []byte) error {
	err := c.w.send(id, typ, flags, data)
	var tooBig *oversizeError
	if err != nil && !errors.As(err, &tooBig) {
		c.close()
	}
	return err
}

// closeIfIdle closes the connection if no call is in flight.
func (c *conn) closeIfIdle() bool {
	c.mu.Lock()
	idle := c.active == 0
	if idle {
		c.closing = true
	}
	c.mu.Unlock()
	if idle {
		c.close()
	}
	return idle
}

// close closes the connection and cancels its calls' contexts.
func (c *conn) close() {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closing = true
		c.mu.Unlock()
		c.cancel()
		c.nc.Close()
	})
}
