package ttrpcserver

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// rawConn speaks frames to the server without ttrpc's client, to send
// what that client never sends.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	nc, err := net.Dial("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	return &rawConn{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func appendFrame(b []byte, length, stream uint32, typ, flags uint8, data []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, length)
	b = binary.BigEndian.AppendUint32(b, stream)
	b = append(b, typ, flags)
	return append(b, data...)
}

func (rc *rawConn) write(stream uint32, typ, flags uint8, data []byte) {
	rc.t.Helper()
	if _, err := rc.nc.Write(appendFrame(nil, uint32(len(data)), stream, typ, flags, data)); err != nil {
		rc.t.Fatalf("write frame on stream %d: %v", stream, err)
	}
}

// response reads the next frame, which must be a Response.
func (rc *rawConn) response() (uint32, *ttrpc.Response) {
	rc.t.Helper()
	h, data, err := readFrame(rc.r)
	if err != nil {
		rc.t.Fatalf("read response: %v", err)
	}
	if h.typ != frameResponse {
		rc.t.Fatalf("read frame of type %d on stream %d, want a response", h.typ, h.stream)
	}
	var resp ttrpc.Response
	if err := proto.Unmarshal(data, &resp); err != nil {
		rc.t.Fatalf("decode response on stream %d: %v", h.stream, err)
	}
	return h.stream, &resp
}

func marshalRequest(t testing.TB, service, method string, payload proto.Message) []byte {
	p, err := proto.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(&ttrpc.Request{Service: service, Method: method, Payload: p})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestProtocolErrors sends, on one connection, frames that ttrpc's server
// answers with an error status, each followed by the frame that shows the
// connection still serves.
func TestProtocolErrors(t *testing.T) {
	_, addr := testServer(t, &ServiceDesc{Methods: map[string]Method{"Echo": echo}})
	rc := dialRaw(t, addr)
	echoReq := func(s string) []byte { return marshalRequest(t, testService, "Echo", wrapperspb.String(s)) }
	tests := []struct {
		name   string
		stream uint32 // of the frame and of the expected answer
		typ    uint8
		flags  uint8
		data   []byte
		code   Code
		msg    string // a prefix of the message
		echo   string // the expected payload of a successful call
	}{
		{name: "oversize", stream: 1, typ: frameRequest, data: make([]byte, maxDataSize+1), code: ResourceExhausted, msg: "message length 4194305 exceed maximum message size of 4194304"},
		{name: "call after oversize", stream: 3, typ: frameRequest, data: echoReq("a"), echo: "a"},
		{name: "even stream", stream: 4, typ: frameRequest, data: echoReq("b"), code: InvalidArgument, msg: "StreamID must be odd for client initiated streams"},
		{name: "reused stream", stream: 3, typ: frameRequest, data: echoReq("c"), code: InvalidArgument, msg: "StreamID cannot be re-used and must increment"},
		{name: "malformed request", stream: 5, typ: frameRequest, data: []byte{0x0a, 0x09, 'x'}, code: InvalidArgument, msg: "unmarshal request error: field 1: truncated or malformed protobuf data"},
		{name: "data on no stream", stream: 7, typ: frameData, data: []byte{0x0a, 0x01, 'x'}, code: InvalidArgument, msg: "StreamID is no longer active"},
		{name: "stream flags on a unary method", stream: 9, typ: frameRequest, flags: flagRemoteOpen, data: echoReq("d"), echo: "d"},
		{name: "oversize data on a stream", stream: 11, typ: frameData, data: make([]byte, maxDataSize+7), code: ResourceExhausted, msg: "message length 4194311"},
	}
	for _, tc := range tests {
		rc.write(tc.stream, tc.typ, tc.flags, tc.data)
		id, resp := rc.response()
		got := &text{}
		if err := got.Unmarshal(resp.Payload); err != nil {
			t.Fatalf("%s: response payload: %v", tc.name, err)
		}
		if id != tc.stream || resp.Status.GetCode() != int32(tc.code) || !strings.HasPrefix(resp.Status.GetMessage(), tc.msg) || got.s != tc.echo {
			t.Errorf("%s: response on stream %d = %v, want stream %d, code %d, message %q..., payload %q", tc.name, id, resp, tc.stream, tc.code, tc.msg, tc.echo)
		}
	}
	// A frame of an unknown type is ignored: the next answer is the next call's.
	rc.write(13, 0x7, 0, []byte("future"))
	rc.write(15, frameRequest, 0, echoReq("e"))
	if id, resp := rc.response(); id != 15 || resp.Status.GetCode() != 0 {
		t.Errorf("after a frame of unknown type: response on stream %d = %v, want stream 15 OK", id, resp)
	}
}

// TestGarbageFrames has connections send random frames, some well formed
// and most not, while a real client calls the server: the server neither
// crashes nor stops serving the client, and takes new connections after.
func TestGarbageFrames(t *testing.T) {
	svc := &ServiceDesc{
		Methods: map[string]Method{
			"Echo":  echo,
			"Panic": func(context.Context, func(Message) error) (Message, error) { panic("garbage") },
		},
		Streams: map[string]StreamDesc{
			"Stream": {Handler: echoStream, StreamingClient: true, StreamingServer: true},
			"Count":  {Handler: echoStream, StreamingServer: true},
		},
	}
	_, addr := testServer(t, svc)
	client := dialClient(t, addr)
	ctx := testCtx(t)

	var wg sync.WaitGroup
	for seed := range uint64(16) {
		nc, err := net.Dial("unix", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		wg.Go(func() { io.Copy(io.Discard, nc) }) // read answers, so the server's writes never block
		wg.Go(func() {
			defer nc.(*net.UnixConn).CloseWrite()
			r := rand.New(rand.NewPCG(seed, 0x7e57))
			for range 300 {
				if _, err := nc.Write(garbageFrame(t, r)); err != nil {
					return // the server may close a connection it cannot read
				}
			}
		})
	}
	for i := range 50 {
		var out wrapperspb.StringValue
		if err := client.Call(ctx, testService, "Echo", wrapperspb.String("live"), &out); err != nil || out.GetValue() != "live" {
			t.Fatalf("Call(Echo) #%d during garbage = %q, %v", i, out.GetValue(), err)
		}
	}
	wg.Wait()
	var out wrapperspb.StringValue
	if err := dialClient(t, addr).Call(ctx, testService, "Echo", wrapperspb.String("after"), &out); err != nil || out.GetValue() != "after" {
		t.Errorf("Call(Echo) on a new connection after garbage = %q, %v", out.GetValue(), err)
	}
}

// garbageFrame returns one random frame: random bytes, a header that
// promises more than follows, or a frame of any type on a small stream ID
// with a random or a real Request as its data.
func garbageFrame(t testing.TB, r *rand.Rand) []byte {
	stream := uint32(r.IntN(64))
	typ := uint8(r.IntN(5))
	flags := uint8(r.IntN(8))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	switch r.IntN(6) {
	case 0:
		return random(r.IntN(40))
	case 1:
		return appendFrame(nil, uint32(r.IntN(1000)+10), stream, typ, flags, random(r.IntN(10)))
	case 2, 3:
		methods := []string{"Echo", "Panic", "Stream", "Count", "Nope"}
		req := marshalRequest(t, testService, methods[r.IntN(len(methods))], wrapperspb.String("1"))
		if r.IntN(4) == 0 {
			req[r.IntN(len(req))] ^= byte(r.Uint32())
		}
		return appendFrame(nil, uint32(len(req)), stream, frameRequest, flags, req)
	default:
		data := random(r.IntN(20))
		return appendFrame(nil, uint32(len(data)), stream, typ, flags, data)
	}
}

// TestServeAfterListenerError: Serve reports a listener that fails for
// another reason than Shutdown or Close, naming it.
func TestServeAfterListenerError(t *testing.T) {
	l, err := net.Listen("unix", t.TempDir()+"/s.sock")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	err = NewServer().Serve(context.Background(), l)
	if err == nil || errors.Is(err, ErrServerClosed) || !strings.Contains(err.Error(), "s.sock") {
		t.Errorf("Serve(closed listener) = %v, want an accept error naming the socket", err)
	}
}

// responseSkippingData reads frames up to the next Response, skipping data
// frames (a handler may still send some before the stream fails).
func (rc *rawConn) responseSkippingData() (uint32, *ttrpc.Response) {
	rc.t.Helper()
	for {
		h, data, err := readFrame(rc.r)
		if err != nil {
			rc.t.Fatalf("read response: %v", err)
		}
		if h.typ == frameData {
			continue
		}
		var resp ttrpc.Response
		if err := proto.Unmarshal(data, &resp); err != nil || h.typ != frameResponse {
			rc.t.Fatalf("frame of type %d on stream %d: %v", h.typ, h.stream, err)
		}
		return h.stream, &resp
	}
}

// TestStreamProtocolErrors sends stream data that ttrpc's server refuses:
// the call fails with InvalidArgument and its handler's context ends.
func TestStreamProtocolErrors(t *testing.T) {
	ended := make(chan error, 3)
	hold := func(ctx context.Context, ss StreamServer) error {
		<-ctx.Done()
		ended <- ctx.Err()
		return ctx.Err()
	}
	started, release := make(chan struct{}, 1), make(chan struct{})
	defer close(release)
	svc := &ServiceDesc{
		Methods: map[string]Method{"Block": blocking(started, release)},
		Streams: map[string]StreamDesc{"Hold": {Handler: hold, StreamingClient: true, StreamingServer: true}},
	}
	_, addr := testServer(t, svc)
	rc := dialRaw(t, addr)
	hold1 := marshalRequest(t, testService, "Hold", wrapperspb.String(""))
	tests := []struct {
		name   string
		frames func()
		stream uint32
		msg    string
	}{
		{"data with the close flag", func() {
			rc.write(1, frameRequest, flagRemoteOpen, hold1)
			rc.write(1, frameData, flagRemoteClosed, []byte{0x0a, 0x01, 'x'})
		}, 1, "data close message cannot include data"},
		{"data after the request closed the client's side", func() {
			rc.write(3, frameRequest, flagRemoteClosed, hold1)
			rc.write(3, frameData, 0, []byte{0x0a, 0x01, 'x'})
		}, 3, "data handling error: ttrpc: stream closed"},
		{"data on a unary call", func() {
			rc.write(5, frameRequest, 0, marshalRequest(t, testService, "Block", wrapperspb.String("")))
			<-started
			rc.write(5, frameData, 0, []byte{0x0a, 0x01, 'x'})
		}, 5, "data message on unary stream 5"},
		{"data on the failed stream", func() {
			rc.write(1, frameData, flagRemoteClosed|flagNoData, nil)
		}, 1, "StreamID is no longer active"},
	}
	for _, tc := range tests {
		tc.frames()
		id, resp := rc.responseSkippingData()
		if id != tc.stream || resp.Status.GetCode() != int32(InvalidArgument) || resp.Status.GetMessage() != tc.msg {
			t.Errorf("%s: response on stream %d = %v, want stream %d, InvalidArgument %q", tc.name, id, resp, tc.stream, tc.msg)
		}
	}
	for range 2 {
		select {
		case err := <-ended:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("failed stream's context ended with %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a failed stream's handler still runs after 10s")
		}
	}
}

func TestRegisterPanics(t *testing.T) {
	tests := []struct {
		name string
		desc *ServiceDesc
	}{
		{"a", &ServiceDesc{}}, // registered already
		{"b", nil},
	}
	for _, tc := range tests {
		s := NewServer()
		s.Register("a", &ServiceDesc{})
		func() {
			defer func() {
				if r := recover(); r == nil {
					t.Errorf("Register(%q, %v) did not panic", tc.name, tc.desc)
				}
			}()
			s.Register(tc.name, tc.desc)
		}()
	}
}
