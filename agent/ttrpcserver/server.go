package ttrpcserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Server serves registered services over ttrpc connections. Its zero value
// is not usable; make one with NewServer.
type Server struct {
	interceptor Interceptor
	log         *slog.Logger

	mu        sync.Mutex
	services  map[string]*ServiceDesc
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closed    bool          // Shutdown or Close was called
	changed   chan struct{} // closed (and replaced) when a connection idles or ends
}

// Option configures a Server.
type Option func(*Server)

// WithUnaryInterceptor makes i wrap every unary call.
func WithUnaryInterceptor(i Interceptor) Option {
	return func(s *Server) { s.interceptor = i }
}

// WithLogger sets where the server logs what it cannot tell a client
// (handler panics, failed accepts and writes). Without it, slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(s *Server) { s.log = l }
}

// NewServer returns a server with no services.
func NewServer(opts ...Option) *Server {
	s := &Server{
		services:  make(map[string]*ServiceDesc),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
		changed:   make(chan struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s
}

// Register serves d's methods under the service name service. Registering
// a name twice, or a nil d, is a programming error and panics (ttrpc panics
// on the first).
func (s *Server) Register(service string, d *ServiceDesc) {
	if d == nil {
		panic(fmt.Sprintf("ttrpcserver: service %q registered without a ServiceDesc", service))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.services[service]; ok {
		panic(fmt.Sprintf("ttrpcserver: duplicate service %q registered", service))
	}
	s.services[service] = d
}

// lookup finds a method: a unary Method, or else a StreamDesc.
func (s *Server) lookup(service, method string) (Method, *StreamDesc, error) {
	s.mu.Lock()
	d, ok := s.services[service]
	s.mu.Unlock()
	if !ok {
		return nil, nil, Errorf(Unimplemented, "service %v", service)
	}
	if m, ok := d.Methods[method]; ok {
		return m, nil, nil
	}
	if sd, ok := d.Streams[method]; ok {
		return nil, &sd, nil
	}
	return nil, nil, Errorf(Unimplemented, "method %v", method)
}

// Serve accepts connections on l and serves each in its own goroutines
// until l fails or the server is shut down, when it returns
// ErrServerClosed. ctx is the parent of every call's context; its end does
// not stop Serve (use Shutdown or Close). Serve closes l when it returns.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer s.closeListener(l)

	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			if !isTemporary(err) {
				return fmt.Errorf("accept on %s: %w", l.Addr(), err)
			}
			// As ttrpc: exponential backoff up to a second, jittered.
			backoff = min(max(2*backoff, time.Millisecond), time.Second)
			sleep := rand.N(backoff)
			s.log.ErrorContext(ctx, "ttrpc: failed accept", "err", err, "backoff", sleep)
			time.Sleep(sleep)
			continue
		}
		backoff = 0
		c := s.addConn(ctx, nc)
		if c == nil {
			nc.Close()
			continue
		}
		go c.serve()
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Shutdown stops accepting connections, closes each connection once it has
// no call in flight (a call's final response written), and returns when
// none is left, or with ctx.Err() if ctx ends first. Connections stay open
// meanwhile, and a busy one may start new calls, as in ttrpc.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	err := s.closeListenersLocked()
	s.mu.Unlock()
	for {
		s.mu.Lock()
		for c := range s.conns {
			if c.closeIfIdle() {
				delete(s.conns, c)
			}
		}
		left, changed := len(s.conns), s.changed
		s.mu.Unlock()
		if left == 0 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// Close stops accepting connections and closes every connection now,
// cancelling the contexts of the calls in flight.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	err := s.closeListenersLocked()
	conns := s.conns
	s.conns = make(map[*conn]struct{})
	s.mu.Unlock()
	for c := range conns {
		c.close()
	}
	return err
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) closeListener(l net.Listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.listeners[l]; ok {
		delete(s.listeners, l)
		l.Close()
	}
}

// closeListenersLocked closes every listener and returns the first error.
func (s *Server) closeListenersLocked() error {
	var first error
	for l := range s.listeners {
		if err := l.Close(); err != nil && first == nil {
			first = fmt.Errorf("close listener %s: %w", l.Addr(), err)
		}
		delete(s.listeners, l)
	}
	return first
}

// addConn tracks a new connection; nil once the server is closed.
func (s *Server) addConn(ctx context.Context, nc net.Conn) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	c := newConn(ctx, s, nc)
	s.conns[c] = struct{}{}
	return c
}

func (s *Server) removeConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.notify()
}

// notify wakes Shutdown: a connection went idle or away.
func (s *Server) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.changed)
	s.changed = make(chan struct{})
}
