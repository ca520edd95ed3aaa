// Package vsock dials a guest's vsock port through a VMM's "hybrid vsock" unix socket, the
// protocol Cloud Hypervisor, Firecracker and vhost-device-vsock share: the client connects
// to the unix socket, writes "CONNECT <port>\n", and the VMM answers a line starting with
// "OK " once a guest listener accepted; with no listener the socket is closed without reply.
package vsock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// options configure Dial.
type options struct {
	console    func() []string
	retryDelay time.Duration
	maxDelay   time.Duration
	attemptTO  time.Duration
}

// Option configures Dial.
type Option func(*options)

// WithConsole gives Dial a function returning the last lines of the guest console; they are
// quoted in the error when the guest never answers.
func WithConsole(tail func() []string) Option {
	return func(o *options) { o.console = tail }
}

// WithRetryDelay sets the first pause between attempts (it doubles up to 250ms).
func WithRetryDelay(d time.Duration) Option {
	return func(o *options) { o.retryDelay = d }
}

// WithAttemptTimeout bounds one dial + CONNECT handshake (default 2s): a VMM that accepted
// but never answers is retried instead of hanging until the overall deadline.
func WithAttemptTimeout(d time.Duration) Option {
	return func(o *options) { o.attemptTO = d }
}

// Dial connects to port of the guest behind the hybrid vsock socket at path. It retries
// until ctx is done, since the unix socket accepts before the guest listens. The returned
// connection carries the guest stream and nothing else.
func Dial(ctx context.Context, path string, port uint32, opts ...Option) (net.Conn, error) {
	o := options{retryDelay: 20 * time.Millisecond, maxDelay: 250 * time.Millisecond, attemptTO: 2 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	delay := o.retryDelay
	var last error
	attempts := 0
	for {
		attempts++
		conn, err := dialOnce(ctx, path, port, o.attemptTO)
		if err == nil {
			return conn, nil
		}
		if ctx.Err() != nil && last != nil {
			// The caller's deadline cut this attempt short: the previous attempt's error says
			// more about the guest.
			return nil, timeoutError(ctx, path, port, attempts, last, o.console)
		}
		last = err
		if errors.Is(err, ErrProtocol) {
			// Not a hybrid vsock endpoint: retrying cannot help.
			return nil, err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, timeoutError(ctx, path, port, attempts, last, o.console)
		case <-t.C:
		}
		if delay *= 2; delay > o.maxDelay {
			delay = o.maxDelay
		}
	}
}

func dialOnce(ctx context.Context, path string, port uint32, timeout time.Duration) (net.Conn, error) {
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(actx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", path, err)
	}
	deadline, _ := actx.Deadline()
	stop := context.AfterFunc(actx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := conn.SetDeadline(deadline); err != nil {
		conn.Close()
		return nil, fmt.Errorf("set deadline on %s: %w", path, err)
	}
	if _, err := fmt.Fprintf(conn, "CONNECT %d\n", port); err != nil {
		conn.Close()
		return nil, fmt.Errorf("send CONNECT %d to %s: %w", port, path, err)
	}
	line, err := readLine(conn)
	if err != nil {
		conn.Close()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("CONNECT %d on %s: closed without reply (no guest listener yet): %w", port, path, ErrRefused)
		}
		return nil, fmt.Errorf("CONNECT %d on %s: read reply: %w", port, path, err)
	}
	if !strings.HasPrefix(line, "OK ") {
		conn.Close()
		return nil, fmt.Errorf("CONNECT %d on %s: unexpected reply %q: %w", port, path, line, ErrProtocol)
	}
	if !stop() {
		// ctx ended just as the handshake finished: the deadline may already be poisoned.
		conn.Close()
		return nil, fmt.Errorf("CONNECT %d on %s: %w", port, path, ctx.Err())
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("clear deadline on %s: %w", path, err)
	}
	return conn, nil
}

// readLine reads one byte at a time up to '\n' so that no byte of the guest stream that
// follows the reply is consumed by a buffer.
func readLine(r io.Reader) (string, error) {
	var b strings.Builder
	var buf [1]byte
	for b.Len() < 128 {
		n, err := r.Read(buf[:])
		if n == 1 {
			if buf[0] == '\n' {
				return b.String(), nil
			}
			b.WriteByte(buf[0])
		}
		if err != nil {
			if errors.Is(err, io.EOF) && b.Len() > 0 {
				return "", fmt.Errorf("reply %q cut short: %w", b.String(), io.ErrUnexpectedEOF)
			}
			return "", err
		}
	}
	return "", fmt.Errorf("reply longer than 128 bytes without newline: %q...: %w", b.String(), ErrProtocol)
}

func timeoutError(ctx context.Context, path string, port uint32, attempts int, last error, console func() []string) error {
	msg := fmt.Sprintf("guest did not answer on vsock port %d via %s after %d attempts (last: %v)", port, path, attempts, last)
	if console != nil {
		if lines := console(); len(lines) > 0 {
			msg += "\nlast lines of the guest console:\n  " + strings.Join(lines, "\n  ")
		} else {
			msg += "\nthe guest console is empty"
		}
	}
	return &TimeoutError{msg: msg, cause: context.Cause(ctx)}
}

// TimeoutError is returned when the guest never answered before the context ended.
type TimeoutError struct {
	msg   string
	cause error
}

func (e *TimeoutError) Error() string { return e.msg }

// Unwrap returns ErrNoAnswer and the context's cause.
func (e *TimeoutError) Unwrap() []error { return []error{ErrNoAnswer, e.cause} }
