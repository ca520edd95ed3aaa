package ttrpcserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"reflect"
	"runtime/debug"
	"sync"
	"time"
)

// streamRecvBuffer is how many received messages a streaming-client call
// buffers (ttrpc's streamRecvBufferSize); other streams buffer one.
const streamRecvBuffer = 64

// streamFullWait is how long the reader waits for a handler to make room
// in a full stream buffer before it fails the stream, as ttrpc does.
const streamFullWait = time.Second

// startUnary runs a unary call in its own goroutine. ttrpc ignores the
// request's flags for a unary method, and so does this server.
func (c *conn) startUnary(cl *call, req request, m Method) {
	if !c.begin(cl) {
		cl.cancel()
		return
	}
	info := &UnaryInfo{FullMethod: fullMethod(req.service, req.method)}
	go func() {
		defer c.finish(cl)
		payload, code, msg := c.srv.runUnary(cl.ctx, info, m, req.payload)
		c.sendFinal(cl, encodeResponse(code, msg, payload))
	}()
}

// runUnary calls m, through the interceptor if there is one, and returns
// the encoded response payload or the status of its failure. A panic is the
// call's failure with Internal (ttrpc would let it crash the process).
func (s *Server) runUnary(ctx context.Context, info *UnaryInfo, m Method, payload []byte) (p []byte, code Code, msg string) {
	defer func() {
		if r := recover(); r != nil {
			p, code, msg = nil, Internal, s.panicked(ctx, info.FullMethod, r)
		}
	}()
	unmarshal := func(msg Message) error { return unmarshalPayload(payload, msg) }
	var resp Message
	var err error
	if s.interceptor != nil {
		resp, err = s.interceptor(ctx, unmarshal, info, m)
	} else {
		resp, err = m(ctx, unmarshal)
	}
	if err == nil {
		if isNil(resp) {
			err = errors.New("ttrpc: marshal called with nil")
		} else {
			p, err = marshalPayload(resp)
		}
	}
	if err != nil {
		p = nil
	}
	code, msg = statusFromError(err)
	return p, code, msg
}

// sendFinal sends a call's Response unless the call already ended. A
// Response larger than a frame is replaced by a ResourceExhausted status
// (ttrpc's server would fail the write and drop the connection).
func (c *conn) sendFinal(cl *call, resp []byte) {
	if len(resp) > maxDataSize {
		resp = encodeResponse(ResourceExhausted, (&oversizeError{length: uint64(len(resp))}).Error(), nil)
	}
	if c.end(cl) {
		c.send(cl.id, frameResponse, 0, resp)
	}
}

// startStream runs a streaming call in its own goroutine. As in ttrpc, the
// request's payload is the first message RecvMsg returns when it is not
// empty or the client does not stream (so an empty request still reaches a
// server-streaming handler). Unlike ttrpc, which waits for a data frame
// with the remote-closed flag in every case, a request without the
// remote-open flag closes the client's side at once: RecvMsg then returns
// io.EOF after the payload instead of blocking.
func (c *conn) startStream(cl *call, req request, d *StreamDesc, flags uint8) {
	size := 1
	if d.StreamingClient {
		size = streamRecvBuffer
	}
	ss := &serverStream{c: c, cl: cl, streamingServer: d.StreamingServer, recv: make(chan []byte, size)}
	cl.stream = ss
	if len(req.payload) > 0 || !d.StreamingClient {
		ss.recv <- req.payload // the buffer is empty: this cannot block
	}
	if flags&flagRemoteOpen == 0 || flags&flagRemoteClosed != 0 {
		ss.closeRecv()
	}
	if !c.begin(cl) {
		cl.cancel()
		return
	}
	method := fullMethod(req.service, req.method)
	go func() {
		defer c.finish(cl)
		code, msg := c.srv.runStream(cl.ctx, method, d.Handler, ss)
		c.endStream(ss, code, msg)
	}()
}

// runStream calls h and returns the status of its result; a panic is the
// call's failure with Internal.
func (s *Server) runStream(ctx context.Context, method string, h StreamHandler, ss StreamServer) (code Code, msg string) {
	defer func() {
		if r := recover(); r != nil {
			code, msg = Internal, s.panicked(ctx, method, r)
		}
	}()
	return statusFromError(h(ctx, ss))
}

// endStream sends a streaming call's last frame as ttrpc's server does: a
// server-streaming call that succeeded ends with a data frame flagged
// remote-closed and no-data (the client's RecvMsg returns io.EOF); any other
// ends with a Response carrying the status and, on success, the message a
// non-streaming server sent.
func (c *conn) endStream(ss *serverStream, code Code, msg string) {
	if ss.streamingServer && code == OK {
		if c.end(ss.cl) {
			c.send(ss.cl.id, frameData, flagRemoteClosed|flagNoData, nil)
		}
		return
	}
	var reply []byte
	if code == OK {
		ss.mu.Lock()
		reply = ss.reply
		ss.mu.Unlock()
	}
	c.sendFinal(ss.cl, encodeResponse(code, msg, reply))
}

func (s *Server) panicked(ctx context.Context, method string, r any) string {
	s.log.ErrorContext(ctx, "ttrpc: handler panicked", "method", method, "panic", r, "stack", string(debug.Stack()))
	return fmt.Sprintf("panic in %s: %v", method, r)
}

// serverStream is the StreamServer of one streaming call.
type serverStream struct {
	c               *conn
	cl              *call
	streamingServer bool

	// recv holds the received payloads; closed once the client closed its
	// side. Only the connection's reader sends on it and closes it.
	recv         chan []byte
	remoteClosed bool // reader only

	mu      sync.Mutex
	reply   []byte // the one message of a non-streaming server
	replied bool
}

// deliver queues a received payload for RecvMsg. When the buffer is full
// it waits up to streamFullWait, then fails with errStreamFull so that one
// stalled handler does not stall the connection's other calls.
func (ss *serverStream) deliver(p []byte) error {
	if ss.remoteClosed {
		return errStreamClosed
	}
	select {
	case ss.recv <- p:
		return nil
	case <-ss.cl.ctx.Done():
		return ss.cl.ctx.Err()
	default:
	}
	t := time.NewTimer(streamFullWait)
	defer t.Stop()
	select {
	case ss.recv <- p:
		return nil
	case <-ss.cl.ctx.Done():
		return ss.cl.ctx.Err()
	case <-t.C:
		return errStreamFull
	}
}

// closeRecv marks the client's side closed: RecvMsg returns io.EOF once
// the buffered messages are read.
func (ss *serverStream) closeRecv() {
	if !ss.remoteClosed {
		ss.remoteClosed = true
		close(ss.recv)
	}
}

// RecvMsg decodes the next received message into m; io.EOF once the client
// closed its side and every message was read, the context's error once the
// call ended.
func (ss *serverStream) RecvMsg(m Message) error {
	select {
	case p, ok := <-ss.recv:
		if !ok {
			return io.EOF
		}
		return unmarshalPayload(p, m)
	case <-ss.cl.ctx.Done():
		return ss.cl.ctx.Err()
	}
}

// SendMsg sends m as a data frame. For a method whose server does not
// stream, the one message m is kept for the Response that ends the call.
func (ss *serverStream) SendMsg(m Message) error {
	var p []byte
	if !isNil(m) { // ttrpc sends nil as no data
		var err error
		if p, err = marshalPayload(m); err != nil {
			return err
		}
	}
	if len(p) > maxDataSize {
		return &Status{Code: ResourceExhausted, Message: (&oversizeError{length: uint64(len(p))}).Error()}
	}
	if ss.c.isEnded(ss.cl) {
		return errStreamClosed
	}
	if !ss.streamingServer {
		return ss.keepReply(p)
	}
	if err := ss.c.send(ss.cl.id, frameData, 0, p); err != nil {
		return fmt.Errorf("send stream data on stream %d: %w", ss.cl.id, err)
	}
	return nil
}

func (ss *serverStream) keepReply(p []byte) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.replied {
		return fmt.Errorf("stream %d: a method whose server does not stream sends one message: %w", ss.cl.id, errStreamClosed)
	}
	ss.reply, ss.replied = p, true
	return nil
}

// unmarshalPayload decodes p into m; its failure is Internal, as ttrpc's
// protoUnmarshal makes it.
func unmarshalPayload(p []byte, m Message) error {
	if isNil(m) {
		return &Status{Code: Internal, Message: "ttrpc: error unsupported request type: nil"}
	}
	if err := m.Unmarshal(p); err != nil {
		return &Status{Code: Internal, Message: "ttrpc: error unmarshalling payload: " + err.Error()}
	}
	return nil
}

// marshalPayload encodes m; its failure is Internal, as in ttrpc.
func marshalPayload(m Message) ([]byte, error) {
	p, err := m.Marshal()
	if err != nil {
		return nil, &Status{Code: Internal, Message: "ttrpc: error marshaling payload: " + err.Error()}
	}
	return p, nil
}

// statusFromError is the status the client sees for a handler's error, as
// ttrpc computes it with grpc's status.FromError and its convertCode: a
// *Status gives its code and message; an error that wraps one gives its
// code and the whole error's text; any other error gives a code for a few
// standard errors, Unknown otherwise, and its text.
func statusFromError(err error) (Code, string) {
	if err == nil {
		return OK, ""
	}
	if st, ok := err.(*Status); ok {
		if st == nil {
			return Unknown, "ttrpc: nil *Status returned as an error"
		}
		return st.Code, st.Message
	}
	if st, ok := StatusOf(err); ok && st != nil {
		return st.Code, err.Error()
	}
	return convertCode(err), err.Error()
}

// convertCode is ttrpc's convertCode (services.go): it compares err itself,
// not what it wraps.
func convertCode(err error) Code {
	switch err {
	case io.EOF:
		return OutOfRange
	case io.ErrClosedPipe, io.ErrNoProgress, io.ErrShortBuffer, io.ErrShortWrite, io.ErrUnexpectedEOF:
		return FailedPrecondition
	case os.ErrInvalid:
		return InvalidArgument
	case context.Canceled:
		return Canceled
	case context.DeadlineExceeded:
		return DeadlineExceeded
	}
	switch {
	case os.IsExist(err):
		return AlreadyExists
	case os.IsNotExist(err):
		return NotFound
	case os.IsPermission(err):
		return PermissionDenied
	}
	return Unknown
}

// isNil reports whether m is nil or a nil pointer (ttrpc refuses both).
func isNil(m Message) bool {
	if m == nil {
		return true
	}
	v := reflect.ValueOf(m)
	switch v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan, reflect.Interface:
		return v.IsNil()
	}
	return false
}

// fullMethod is "/service/method", made as ttrpc's fullPath makes it.
func fullMethod(service, method string) string {
	return "/" + path.Join(service, method)
}
