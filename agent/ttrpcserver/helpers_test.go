package ttrpcserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/ttrpc"

	"confguest/agent/pbwire"
)

// text is a Message wire-compatible with google.protobuf.StringValue
// (field 1, a string), so the real client can send wrapperspb values.
type text struct{ s string }

func (t *text) Marshal() ([]byte, error) {
	if t.s == "" {
		return nil, nil
	}
	return pbwire.AppendString(pbwire.AppendTag(nil, 1, pbwire.BytesType), t.s), nil
}

func (t *text) Unmarshal(b []byte) error {
	t.s = ""
	for len(b) > 0 {
		num, typ, n := pbwire.ConsumeTag(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		if num != 1 {
			n, err := skipValue(b, num, typ)
			if err != nil {
				return err
			}
			b = b[n:]
			continue
		}
		if typ != pbwire.BytesType {
			return fmt.Errorf("field 1: wire type %d, want %d", typ, pbwire.BytesType)
		}
		v, n := pbwire.ConsumeBytes(b)
		if n < 0 {
			return errMalformed
		}
		var err error
		if t.s, err = decodeString(v); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

const testService = "test.Echo"

// testServer serves svc on a unix socket in a temporary directory and
// returns its address. The server is closed, and Serve's result checked,
// when the test ends.
func testServer(t *testing.T, svc *ServiceDesc, opts ...Option) (*Server, string) {
	t.Helper()
	srv, addr, _, served := startServer(t, svc, opts...)
	t.Cleanup(func() {
		srv.Close()
		select {
		case err := <-served:
			if !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve() = %v, want %v", err, ErrServerClosed)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return after Close")
		}
	})
	return srv, addr
}

// startServer starts serving svc on a unix socket in a temporary
// directory: the server, the socket's address, its listener, and Serve's
// result to come.
func startServer(t *testing.T, svc *ServiceDesc, opts ...Option) (*Server, string, net.Listener, <-chan error) {
	t.Helper()
	quiet := WithLogger(slog.New(slog.DiscardHandler)) // handler panics are logged
	srv := NewServer(append([]Option{quiet}, opts...)...)
	srv.Register(testService, svc)
	addr := filepath.Join(t.TempDir(), "ttrpc.sock")
	l, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), l) }()
	return srv, addr, l, served
}

// dialClient connects the real ttrpc client to addr.
func dialClient(t *testing.T, addr string) *ttrpc.Client {
	t.Helper()
	conn, err := net.Dial("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := ttrpc.NewClient(conn)
	t.Cleanup(func() { c.Close() })
	return c
}

// testCtx is a context that ends with the test, at the latest after 30s.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// echo is a unary Method that returns its request.
func echo(ctx context.Context, unmarshal func(Message) error) (Message, error) {
	var in text
	if err := unmarshal(&in); err != nil {
		return nil, err
	}
	return &in, nil
}

// returns is a unary Method that decodes its request and returns resp, err.
func returns(resp Message, err error) Method {
	return func(ctx context.Context, unmarshal func(Message) error) (Message, error) {
		var in text
		if uerr := unmarshal(&in); uerr != nil {
			return nil, uerr
		}
		return resp, err
	}
}
