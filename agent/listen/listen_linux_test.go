package listen

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A unix listener accepts a client's connection, which reads and writes both ways, honours
// read deadlines, and sees the client's close as EOF; Close makes a waiting Accept return
// net.ErrClosed and removes the socket file.
func TestUnix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	l, err := Unix(path)
	if err != nil {
		t.Fatal(err)
	}
	if l.Addr().Network() != "unix" || l.Addr().String() != path {
		t.Errorf("Addr = %s %s, want unix %s", l.Addr().Network(), l.Addr(), path)
	}
	client, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("server read %q, %v; want ping", buf, err)
	}
	if _, err := c.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("client read %q, %v; want pong", buf, err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read past the deadline = %v, want os.ErrDeadlineExceeded", err)
	}
	c.SetReadDeadline(time.Time{})
	if rc, ok := c.(interface {
		SyscallConn() (syscall.RawConn, error)
	}); !ok {
		t.Error("an accepted connection has no SyscallConn")
	} else if raw, err := rc.SyscallConn(); err != nil {
		t.Error(err)
	} else {
		var cred *syscall.Ucred
		raw.Control(func(fd uintptr) { cred, _ = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED) })
		if cred == nil || int(cred.Pid) != os.Getpid() {
			t.Errorf("peer credentials through SyscallConn = %+v, want this process", cred)
		}
	}
	client.Close()
	if n, err := c.Read(buf); n != 0 || err != io.EOF {
		t.Errorf("read after the client closed = %d, %v; want 0, EOF", n, err)
	}

	accepted := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		accepted <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-accepted:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still waits after Close")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the socket file is still there after Close: %v", err)
	}
}

// Listening where a file other than a socket exists fails, naming the path; nothing is
// removed.
func TestUnixExists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "taken")
	os.WriteFile(path, []byte("keep"), 0o600)
	if _, err := Unix(path); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Unix(existing file) = %v, want an error naming the path and saying it is not a socket", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "keep" {
		t.Errorf("the existing file was changed: %q", b)
	}
}

// A socket file left by an earlier listener (the agent restarted without closing its
// listener) is replaced, and the new listener accepts.
func TestUnixStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stale")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd) // leaves the socket file, as a process that dies does
	l, err := Unix(path)
	if err != nil {
		t.Fatalf("Unix(stale socket) = %v, want it replaced", err)
	}
	defer l.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial the new listener: %v", err)
	}
	c.Close()
}

// A vsock listener binds the port on any of the machine's context IDs; where the kernel
// has no vsock (no module on this host) the error says so.
func TestVsock(t *testing.T) {
	l, err := Vsock(52001, 2)
	if errors.Is(err, syscall.EAFNOSUPPORT) || errors.Is(err, syscall.ENODEV) {
		t.Skipf("no vsock in this kernel: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if a := l.Addr(); a.Network() != "vsock" || a.String() != "4294967295:52001" {
		t.Errorf("Addr = %s %s, want vsock 4294967295:52001", a.Network(), a)
	}
}

// A listener with a peer filter closes a connection it does not allow as soon as it is
// accepted (the client reads EOF, nothing was served) and goes on to the next; the agent's
// vsock listener filters by the peer's context ID this way.
func TestPeerFilter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := Unix(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := 0
	ln.(*listener).allow = func(unix.Sockaddr) bool { seen++; return seen > 1 }
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	refused, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer refused.Close()
	refused.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := refused.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("a refused peer read %d, %v; want 0, EOF (closed at once)", n, err)
	}
	allowed, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer allowed.Close()
	select {
	case c := <-accepted:
		if c == nil {
			t.Fatal("no connection accepted")
		}
		defer c.Close()
		allowed.Write([]byte("x"))
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Errorf("the allowed connection: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return the allowed connection")
	}
	if seen != 2 {
		t.Errorf("the filter saw %d connections, want 2", seen)
	}
}
