package ttrpcserver

import "errors"

// ErrServerClosed is what Serve returns once Shutdown or Close was called.
var ErrServerClosed = errors.New("ttrpc: server closed")

// errStreamClosed is SendMsg's error after the stream ended (its handler
// returned, the stream failed or the connection closed), and the data
// handling error for data that arrives after the client closed its side.
var errStreamClosed = errors.New("ttrpc: stream closed")

// errStreamFull fails a stream whose handler leaves its received messages
// buffered for a second: the connection's reader does not wait longer.
var errStreamFull = errors.New("ttrpc: stream buffer full: the handler did not receive its buffered messages within 1s")
