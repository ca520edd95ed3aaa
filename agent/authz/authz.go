// Package authz is the agent's single authorization point. Every request
// of the agent API passes Authorizer.Authorize with its full method name
// and decoded request before any handler code runs: the ttrpc server is
// built with this package's unary interceptor and its streaming handlers
// receive through Stream; both wrap the request decoder, so a handler
// cannot see a request that was not authorized.
//
// A unary request is decoded once, here: the wire message, then the JSON
// documents it carries (request.Decode). The authorizer checks that
// decoded value and the handler receives the same value (Decoded), so
// what was authorized is what the handler acts on.
//
// Until a measured policy is installed the agent uses AllowAll, which
// admits everything and logs each decision.
package authz

import (
	"context"
	"errors"
	"log/slog"

	"confguest/agent/request"
	"confguest/agent/ttrpcserver"
)

// ErrDenied marks a request the authorizer refused; wrap it with the rule
// and field that refused it.
var ErrDenied = errors.New("permission denied")

// Authorizer decides whether a request may proceed. req is the decoded
// request message (a pointer to the generated type). A non-nil error
// refuses the request; it should wrap ErrDenied.
type Authorizer interface {
	Authorize(ctx context.Context, method string, req any) error
}

// AllowAll admits every request and logs the decision.
type AllowAll struct {
	Logger *slog.Logger
}

// Authorize always allows.
func (a AllowAll) Authorize(ctx context.Context, method string, req any) error {
	log := a.Logger
	if log == nil {
		log = slog.Default()
	}
	level := slog.LevelInfo
	if Continuation(ctx) {
		// Flow-control messages of a stream that was already admitted: one
		// line per output chunk would flood the serial console.
		level = slog.LevelDebug
	}
	log.LogAttrs(ctx, level, "authorize", slog.String("method", method), slog.String("decision", "allow"), slog.String("rule", "allow-all (no policy installed)"))
	return nil
}

// UnaryInterceptor decodes each unary request (the message, then its
// JSON with request.Decode) and authorizes the decoded value before the
// handler runs; the handler gets that value from its context with Decoded.
func UnaryInterceptor(a Authorizer) ttrpcserver.Interceptor {
	return func(ctx context.Context, unmarshal func(ttrpcserver.Message) error, info *ttrpcserver.UnaryInfo, method ttrpcserver.Method) (ttrpcserver.Message, error) {
		slot := new(decodedSlot)
		ctx = context.WithValue(ctx, decodedKey{}, slot)
		return method(ctx, func(req ttrpcserver.Message) error {
			if err := unmarshal(req); err != nil {
				return err
			}
			d, err := Check(ctx, a, info.FullMethod, req)
			if err != nil {
				return err
			}
			slot.v = d
			return nil
		})
	}
}

// Check is the edge's step for one unmarshalled message: decode its JSON
// (request.Decode), then ask a about the decoded value, which it returns.
// Code that stands in for the agent's edge (tests, the host's policy
// tools) calls Check rather than Authorize, so it decides as the agent
// does.
func Check(ctx context.Context, a Authorizer, method string, msg any) (any, error) {
	d, err := request.Decode(msg)
	if err != nil {
		return nil, err
	}
	if err := a.Authorize(ctx, method, d); err != nil {
		return nil, err
	}
	return d, nil
}

type decodedKey struct{}

type decodedSlot struct{ v any }

// Decoded returns the decoded request UnaryInterceptor authorized for the
// handler running under ctx (a *request.CreateContainer for
// CreateContainer, ...), or nil outside such a handler.
func Decoded(ctx context.Context) any {
	if s, ok := ctx.Value(decodedKey{}).(*decodedSlot); ok {
		return s.v
	}
	return nil
}

// Stream wraps a server stream of method so that every message the
// client sends is authorized before the handler receives it. (ttrpc has
// no stream interceptor option; the agent wraps its streaming handlers
// with this, and a test checks that every method of the service is
// authorized.)
func Stream(ctx context.Context, a Authorizer, method string, ss ttrpcserver.StreamServer) ttrpcserver.StreamServer {
	return &authorizedStream{StreamServer: ss, ctx: ctx, method: method, a: a}
}

type authorizedStream struct {
	ttrpcserver.StreamServer
	ctx      context.Context
	method   string
	a        Authorizer
	received bool
}

func (s *authorizedStream) RecvMsg(m ttrpcserver.Message) error {
	if err := s.StreamServer.RecvMsg(m); err != nil {
		return err
	}
	ctx := s.ctx
	if s.received {
		ctx = context.WithValue(ctx, continuationKey{}, true)
	}
	s.received = true
	return s.a.Authorize(ctx, s.method, m)
}

type continuationKey struct{}

// Continuation reports whether the request being authorized is a later
// message on a stream whose first message was already authorized.
func Continuation(ctx context.Context) bool {
	v, _ := ctx.Value(continuationKey{}).(bool)
	return v
}
