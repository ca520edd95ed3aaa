package vsock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeVMM is an in-process hybrid vsock endpoint behaving as Cloud Hypervisor's docs/vsock.md
// and vhost-device-vsock do: it accepts every unix connection, reads "CONNECT <port>\n", and
// answers "OK <hostport>\n" if a guest listener exists for the port, else closes the
// connection without a reply. Connected streams echo what they receive, after a greeting.
type fakeVMM struct {
	ln net.Listener

	mu        sync.Mutex
	listening map[uint32]bool
	reply     string // if set, sent instead of the protocol answer
	silent    bool   // accept, read CONNECT, never answer
	connects  int
}

func newFakeVMM(t *testing.T, path string) *fakeVMM {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("listen %s: %v", path, err)
	}
	f := &fakeVMM{ln: ln, listening: map[uint32]bool{}}
	t.Cleanup(func() { ln.Close() })
	go f.serve()
	return f
}

func (f *fakeVMM) listen(port uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listening[port] = true
}

func (f *fakeVMM) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		go f.handle(c)
	}
}

func (f *fakeVMM) handle(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return
	}
	var port uint32
	if _, err := fmt.Sscanf(line, "CONNECT %d\n", &port); err != nil {
		return
	}
	f.mu.Lock()
	f.connects++
	ok, reply, silent := f.listening[port], f.reply, f.silent
	f.mu.Unlock()
	switch {
	case silent:
		io.Copy(io.Discard, r)
		return
	case reply != "":
		io.WriteString(c, reply)
		return
	case !ok:
		return
	}
	// The greeting follows the OK line in the same write, as a fast guest's first bytes may.
	if _, err := io.WriteString(c, "OK 1073741824\ngreeting\n"); err != nil {
		return
	}
	io.Copy(c, r)
}

func consoleTail() []string {
	return []string{"[    1.0] confguest init: mounting root", "panic: no agent"}
}

func TestDial(t *testing.T) {
	tests := []struct {
		name       string
		setup      func(f *fakeVMM)
		later      func(f *fakeVMM) // run 150ms after Dial starts
		deadline   time.Duration
		wantErr    error
		wantInErr  []string
		wantEchoed bool
	}{
		{
			name:       "listener ready",
			setup:      func(f *fakeVMM) { f.listen(1024) },
			deadline:   2 * time.Second,
			wantEchoed: true,
		},
		{
			name:       "delayed listener",
			later:      func(f *fakeVMM) { f.listen(1024) },
			deadline:   3 * time.Second,
			wantEchoed: true,
		},
		{
			name:      "no listener",
			setup:     func(f *fakeVMM) { f.listen(9999) },
			deadline:  time.Second,
			wantErr:   ErrNoAnswer,
			wantInErr: []string{"port 1024", "panic: no agent", "closed without reply"},
		},
		{
			name:      "garbage reply",
			setup:     func(f *fakeVMM) { f.reply = "HTTP/1.1 400 Bad Request\r\n" },
			deadline:  2 * time.Second,
			wantErr:   ErrProtocol,
			wantInErr: []string{"HTTP/1.1 400"},
		},
		{
			name:      "reply without newline",
			setup:     func(f *fakeVMM) { f.reply = "OK 12" },
			deadline:  time.Second,
			wantErr:   ErrNoAnswer,
			wantInErr: []string{"cut short"},
		},
		{
			name:      "never answers",
			setup:     func(f *fakeVMM) { f.silent = true },
			deadline:  400 * time.Millisecond,
			wantErr:   ErrNoAnswer,
			wantInErr: []string{"i/o timeout"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "vm.vsock")
			f := newFakeVMM(t, path)
			if tc.setup != nil {
				tc.setup(f)
			}
			if tc.later != nil {
				time.AfterFunc(150*time.Millisecond, func() { tc.later(f) })
			}
			ctx, cancel := context.WithTimeout(context.Background(), tc.deadline)
			defer cancel()
			start := time.Now()
			conn, err := Dial(ctx, path, 1024, WithConsole(consoleTail), WithAttemptTimeout(100*time.Millisecond))
			if tc.wantErr != nil {
				if err == nil {
					conn.Close()
					t.Fatalf("Dial(%q, 1024) = nil error, want %v", path, tc.wantErr)
				}
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("Dial(%q, 1024) = %v, want errors.Is %v", path, err, tc.wantErr)
				}
				for _, s := range tc.wantInErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("Dial(%q, 1024) error %q does not mention %q", path, err, s)
					}
				}
				if errors.Is(err, ErrProtocol) && time.Since(start) > time.Second {
					t.Errorf("Dial(%q, 1024) retried a protocol error for %v, want it to fail at once", path, time.Since(start))
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial(%q, 1024) = %v, want a connection", path, err)
			}
			defer conn.Close()
			if !tc.wantEchoed {
				return
			}
			conn.SetDeadline(time.Now().Add(2 * time.Second))
			r := bufio.NewReader(conn)
			got, err := r.ReadString('\n')
			if err != nil || got != "greeting\n" {
				t.Fatalf("first guest bytes = %q, %v, want %q (the OK line must not swallow them)", got, err, "greeting\n")
			}
			if _, err := io.WriteString(conn, "ping\n"); err != nil {
				t.Fatalf("write: %v", err)
			}
			if got, err := r.ReadString('\n'); err != nil || got != "ping\n" {
				t.Errorf("echo = %q, %v, want %q", got, err, "ping\n")
			}
		})
	}
}

func TestDialSocketAppearsLater(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vm.vsock")
	done := make(chan *fakeVMM, 1)
	time.AfterFunc(150*time.Millisecond, func() {
		f := newFakeVMM(t, path)
		f.listen(1024)
		done <- f
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := Dial(ctx, path, 1024)
	if err != nil {
		t.Fatalf("Dial(%q, 1024) before the VMM created its socket = %v, want it to retry until it exists", path, err)
	}
	conn.Close()
	<-done
}

func TestDialCancel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vm.vsock")
	newFakeVMM(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := Dial(ctx, path, 1024)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrNoAnswer) {
		t.Errorf("Dial after cancel = %v, want ErrNoAnswer and context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Dial returned %v after cancel, want promptly", d)
	}
}
