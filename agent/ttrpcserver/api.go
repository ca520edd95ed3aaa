// Package ttrpcserver is the agent's ttrpc server: the protocol of
// github.com/containerd/ttrpc (PROTOCOL.md there: 10-byte frames, requests,
// responses and stream data, status codes as google.rpc.Status) for
// messages that encode themselves, so that the agent links no protobuf
// runtime. The host keeps containerd's ttrpc client and the protobuf types
// of agent/api/v1; the agent's side of the same API (agent/api/v1/wire) is
// generated from the same agent.proto without protobuf's reflection.
//
// What the server does not do: handshakes (the agent uses none), metadata
// (read and ignored), server-initiated streams (the protocol has none).
package ttrpcserver

import (
	"context"
	"errors"
	"fmt"
)

// Message is a protobuf message with its own wire encoding.
type Message interface {
	// Marshal returns the message's protobuf encoding. It fails only on a
	// string field that is not valid UTF-8, as proto.Marshal does.
	Marshal() ([]byte, error)
	// Unmarshal replaces the message's contents with the decoded b. It
	// refuses what proto.Unmarshal refuses (truncated or malformed wire
	// data, a string that is not valid UTF-8, a field of the wrong wire
	// type) and keeps the fields it does not know, raw.
	Unmarshal(b []byte) error
}

// UnaryInfo describes the unary call an Interceptor intercepts.
type UnaryInfo struct {
	FullMethod string // "/" + service + "/" + method
}

// Method handles one unary call: it decodes its request with unmarshal (a
// failure there is the call's error) and returns the response.
type Method func(ctx context.Context, unmarshal func(Message) error) (Message, error)

// Interceptor wraps every unary call: it may decode the request through
// unmarshal itself, wrap unmarshal, or refuse the call without calling next.
type Interceptor func(ctx context.Context, unmarshal func(Message) error, info *UnaryInfo, next Method) (Message, error)

// StreamServer is the server's side of one streaming call.
type StreamServer interface {
	// SendMsg sends m as stream data.
	SendMsg(m Message) error
	// RecvMsg decodes the client's next message into m; io.EOF once the
	// client closed its side.
	RecvMsg(m Message) error
}

// StreamHandler handles one streaming call; its error (nil: OK) is the
// status of the response that ends the stream.
type StreamHandler func(ctx context.Context, ss StreamServer) error

// StreamDesc describes one streaming method.
type StreamDesc struct {
	Handler         StreamHandler
	StreamingClient bool // the client sends more than one message
	StreamingServer bool // the server sends more than one message
}

// ServiceDesc is a service's methods by name (the part after the service
// name in a full method name).
type ServiceDesc struct {
	Methods map[string]Method
	Streams map[string]StreamDesc
}

// Code is a status code, numbered as gRPC's (google.golang.org/grpc/codes),
// which is what the host's ttrpc client decodes.
type Code int32

// The status codes.
const (
	OK                 Code = 0
	Canceled           Code = 1
	Unknown            Code = 2
	InvalidArgument    Code = 3
	DeadlineExceeded   Code = 4
	NotFound           Code = 5
	AlreadyExists      Code = 6
	PermissionDenied   Code = 7
	ResourceExhausted  Code = 8
	FailedPrecondition Code = 9
	Aborted            Code = 10
	OutOfRange         Code = 11
	Unimplemented      Code = 12
	Internal           Code = 13
	Unavailable        Code = 14
	DataLoss           Code = 15
	Unauthenticated    Code = 16
)

// Status is an error with a status code: what a handler returns to choose
// the code the client sees. Any other error reaches the client as Unknown
// with its text.
type Status struct {
	Code    Code
	Message string
}

func (s *Status) Error() string {
	return fmt.Sprintf("ttrpc status %d: %s", s.Code, s.Message)
}

// Errorf returns a *Status error.
func Errorf(code Code, format string, args ...any) error {
	return &Status{Code: code, Message: fmt.Sprintf(format, args...)}
}

// StatusOf returns the status err carries (errors.As), if any.
func StatusOf(err error) (*Status, bool) {
	var s *Status
	if errors.As(err, &s) {
		return s, true
	}
	return nil, false
}
