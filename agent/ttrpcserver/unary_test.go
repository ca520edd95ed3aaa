package ttrpcserver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestUnaryRoundTrip(t *testing.T) {
	_, addr := testServer(t, &ServiceDesc{Methods: map[string]Method{"Echo": echo}})
	client := dialClient(t, addr)
	for _, in := range []string{"hello", "", "ünïcode ✓", strings.Repeat("x", 1<<20)} {
		var out wrapperspb.StringValue
		err := client.Call(testCtx(t), testService, "Echo", wrapperspb.String(in), &out)
		if err != nil || out.GetValue() != in {
			t.Errorf("Call(Echo, %.20q) = %.20q, %v; want the same text, nil", in, out.GetValue(), err)
		}
	}
}

func TestStatusReachesClient(t *testing.T) {
	notFound := Errorf(NotFound, "container %q not found", "c1")
	methods := map[string]Method{
		"Status":   returns(nil, notFound),
		"Wrapped":  returns(nil, fmt.Errorf("delete: %w", notFound)),
		"Plain":    returns(nil, errors.New("disk on fire")),
		"Canceled": returns(nil, context.Canceled),
		"NotExist": returns(nil, &fs.PathError{Op: "open", Path: "/x", Err: os.ErrNotExist}),
		"WrapEOF":  returns(nil, fmt.Errorf("read: %w", os.ErrNotExist)),
		"Nil":      returns(nil, nil),
		"NilPtr":   returns((*text)(nil), nil),
		"Panic": func(ctx context.Context, unmarshal func(Message) error) (Message, error) {
			panic("handler bug")
		},
		"BadInput": func(ctx context.Context, unmarshal func(Message) error) (Message, error) {
			return nil, unmarshal(&text{})
		},
	}
	_, addr := testServer(t, &ServiceDesc{Methods: methods})
	client := dialClient(t, addr)
	tests := []struct {
		method string
		req    any
		code   codes.Code
		msg    string
	}{
		{"Status", wrapperspb.String("x"), codes.NotFound, `container "c1" not found`},
		{"Wrapped", wrapperspb.String("x"), codes.NotFound, `delete: ttrpc status 5: container "c1" not found`},
		{"Plain", wrapperspb.String("x"), codes.Unknown, "disk on fire"},
		{"Canceled", wrapperspb.String("x"), codes.Canceled, "context canceled"},
		{"NotExist", wrapperspb.String("x"), codes.NotFound, "open /x: file does not exist"},
		// ttrpc's convertCode does not unwrap: os.IsNotExist ignores %w.
		{"WrapEOF", wrapperspb.String("x"), codes.Unknown, "read: file does not exist"},
		{"Nil", wrapperspb.String("x"), codes.Unknown, "ttrpc: marshal called with nil"},
		{"NilPtr", wrapperspb.String("x"), codes.Unknown, "ttrpc: marshal called with nil"},
		{"Panic", wrapperspb.String("x"), codes.Internal, "panic in /test.Echo/Panic: handler bug"},
		// Field 1 as a varint is the wrong wire type for text.
		{"BadInput", wrapperspb.Int64(7), codes.Internal, "ttrpc: error unmarshalling payload: field 1: wire type 0, want 2"},
	}
	for _, tc := range tests {
		t.Run(tc.method, func(t *testing.T) {
			var out wrapperspb.StringValue
			err := client.Call(testCtx(t), testService, tc.method, tc.req, &out)
			if status.Code(err) != tc.code || status.Convert(err).Message() != tc.msg {
				t.Errorf("Call(%s) = %v, want code %v, message %q", tc.method, err, tc.code, tc.msg)
			}
		})
	}
	// The server survived all of that.
	var out wrapperspb.StringValue
	if err := client.Call(testCtx(t), testService, "Status", wrapperspb.String("x"), &out); status.Code(err) != codes.NotFound {
		t.Errorf("Call(Status) after the failures = %v, want NotFound", err)
	}
}

func TestUnimplemented(t *testing.T) {
	_, addr := testServer(t, &ServiceDesc{Methods: map[string]Method{"Echo": echo}})
	client := dialClient(t, addr)
	tests := []struct {
		service, method, msg string
	}{
		{"no.Such", "Echo", "service no.Such"},
		{testService, "Nope", "method Nope"},
	}
	for _, tc := range tests {
		var out wrapperspb.StringValue
		err := client.Call(testCtx(t), tc.service, tc.method, wrapperspb.String("x"), &out)
		if status.Code(err) != codes.Unimplemented || status.Convert(err).Message() != tc.msg {
			t.Errorf("Call(%s, %s) = %v, want Unimplemented %q", tc.service, tc.method, err, tc.msg)
		}
	}
}

func TestInterceptor(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	refuse := func(ctx context.Context, unmarshal func(Message) error, info *UnaryInfo, next Method) (Message, error) {
		mu.Lock()
		seen = append(seen, info.FullMethod)
		mu.Unlock()
		var in text
		if err := unmarshal(&in); err != nil {
			return nil, err
		}
		if in.s == "deny" {
			return nil, Errorf(PermissionDenied, "%s refused", info.FullMethod)
		}
		return next(ctx, unmarshal)
	}
	_, addr := testServer(t, &ServiceDesc{Methods: map[string]Method{"Echo": echo}}, WithUnaryInterceptor(refuse))
	client := dialClient(t, addr)

	var out wrapperspb.StringValue
	if err := client.Call(testCtx(t), testService, "Echo", wrapperspb.String("allow"), &out); err != nil || out.GetValue() != "allow" {
		t.Errorf(`Call(Echo, "allow") = %q, %v; want "allow", nil`, out.GetValue(), err)
	}
	err := client.Call(testCtx(t), testService, "Echo", wrapperspb.String("deny"), &out)
	if status.Code(err) != codes.PermissionDenied || status.Convert(err).Message() != "/test.Echo/Echo refused" {
		t.Errorf(`Call(Echo, "deny") = %v, want PermissionDenied "/test.Echo/Echo refused"`, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"/test.Echo/Echo", "/test.Echo/Echo"}; fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("interceptor saw %v, want %v", seen, want)
	}
}

func TestTimeoutReachesHandler(t *testing.T) {
	deadline := func(ctx context.Context, unmarshal func(Message) error) (Message, error) {
		dl, ok := ctx.Deadline()
		if !ok {
			return &text{"none"}, nil
		}
		return &text{time.Until(dl).String()}, nil
	}
	_, addr := testServer(t, &ServiceDesc{Methods: map[string]Method{"Deadline": deadline}})
	client := dialClient(t, addr)

	var out wrapperspb.StringValue
	if err := client.Call(context.Background(), testService, "Deadline", wrapperspb.String(""), &out); err != nil || out.GetValue() != "none" {
		t.Errorf("Call(Deadline) without a deadline = %q, %v; want none", out.GetValue(), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if err := client.Call(ctx, testService, "Deadline", wrapperspb.String(""), &out); err != nil {
		t.Fatalf("Call(Deadline) = %v", err)
	}
	left, err := time.ParseDuration(out.GetValue())
	if err != nil || left <= 59*time.Minute || left > time.Hour {
		t.Errorf("handler's deadline is %q away, want just under 1h", out.GetValue())
	}
}

// TestConcurrentUnary holds 100 calls in their handlers at once: each
// waits until all have arrived, which only works if every call has its
// own goroutine.
func TestConcurrentUnary(t *testing.T) {
	const n = 100
	var arrived atomic.Int32
	all := make(chan struct{})
	gather := func(ctx context.Context, unmarshal func(Message) error) (Message, error) {
		if arrived.Add(1) == n {
			close(all)
		}
		select {
		case <-all:
			return echo(ctx, unmarshal)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	_, addr := testServer(t, &ServiceDesc{Methods: map[string]Method{"Gather": gather}})
	client := dialClient(t, addr)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			var out wrapperspb.StringValue
			in := fmt.Sprint(i)
			err := client.Call(ctx, testService, "Gather", wrapperspb.String(in), &out)
			if err == nil && out.GetValue() != in {
				err = fmt.Errorf("got %q, want %q", out.GetValue(), in)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Call(Gather, %d) = %v", i, err)
		}
	}
}

func TestOversizeResponse(t *testing.T) {
	big := returns(&text{strings.Repeat("x", maxDataSize)}, nil)
	_, addr := testServer(t, &ServiceDesc{Methods: map[string]Method{"Big": big, "Echo": echo}})
	client := dialClient(t, addr)
	var out wrapperspb.StringValue
	err := client.Call(testCtx(t), testService, "Big", wrapperspb.String(""), &out)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "exceed maximum message size of 4194304") {
		t.Errorf("Call(Big) = %v, want ResourceExhausted", err)
	}
	if err := client.Call(testCtx(t), testService, "Echo", wrapperspb.String("next"), &out); err != nil || out.GetValue() != "next" {
		t.Errorf("Call(Echo) after the oversized response = %q, %v; want next, nil", out.GetValue(), err)
	}
}
