// Package listen opens the agent's listening sockets, a vsock port (the agent API, from the
// host) and unix sockets (the evidence endpoint, and the API in tests on a host), as
// net.Listeners whose connections are read and written through the runtime's poller.
//
// It is what the agent needs of the net package's listeners and of a vsock library, and no
// more: a socket, bind, listen and accept4, each connection an *os.File on a non-blocking
// descriptor (which has deadlines). Nothing resolves an address, so the agent's start runs
// none of net's resolver and dialer code, and the guest links no vsock or socket library.
package listen

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// backlog is the listen(2) backlog: the kernel caps it at net.core.somaxconn.
const backlog = 4096

// Vsock listens on vsock port port of any of the guest's addresses (VMADDR_CID_ANY) for
// connections from context ID peer only: a connection from any other is closed as soon as
// it is accepted. The agent's API takes the host's (VMADDR_CID_HOST) alone: with vsock's
// loopback transport a process in the guest, a container's among them (vsock has no
// network namespaces), could otherwise connect to the port through the guest's own
// context ID or VMADDR_CID_LOCAL.
func Vsock(port, peer uint32) (net.Listener, error) {
	l, err := open(unix.AF_VSOCK, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: port}, VsockAddr{CID: unix.VMADDR_CID_ANY, Port: port})
	if err != nil {
		return nil, fmt.Errorf("listen on vsock port %d: %w", port, err)
	}
	l.allow = func(sa unix.Sockaddr) bool {
		vm, ok := sa.(*unix.SockaddrVM)
		return ok && vm.CID == peer
	}
	return l, nil
}

// Unix listens on a new unix stream socket at path, replacing a socket an earlier listener
// left there (any other file at path is an error). Closing the listener removes the socket
// file, as net's unix listener does.
func Unix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("listen on unix socket %s: the file there is not a socket (mode %s): remove it or choose another path", path, fi.Mode())
		}
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("listen on unix socket %s: remove the stale socket: %w", path, err)
		}
	}
	l, err := open(unix.AF_UNIX, &unix.SockaddrUnix{Name: path}, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on unix socket %s: %w", path, err)
	}
	l.unlink = path
	return l, nil
}

// VsockAddr is a vsock address: a context ID and a port.
type VsockAddr struct{ CID, Port uint32 }

func (VsockAddr) Network() string { return "vsock" }
func (a VsockAddr) String() string {
	return strconv.FormatUint(uint64(a.CID), 10) + ":" + strconv.FormatUint(uint64(a.Port), 10)
}

// listener accepts on a non-blocking listening socket through the runtime's poller.
type listener struct {
	f      *os.File
	rc     syscall.RawConn
	addr   net.Addr
	unlink string // the unix socket's path, removed on Close
	// allow says whether a connection from the peer address may be accepted; nil: all.
	allow  func(unix.Sockaddr) bool
	closed atomic.Bool
}

func open(domain int, sa unix.Sockaddr, addr net.Addr) (*listener, error) {
	fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listen: %w", err)
	}
	f := os.NewFile(uintptr(fd), addr.String())
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &listener{f: f, rc: rc, addr: addr}, nil
}

// Accept waits for the next connection. After Close it returns an error that is
// net.ErrClosed; a failure the process may recover from (too many open files) is a
// syscall.Errno whose Temporary method says so.
func (l *listener) Accept() (net.Conn, error) {
	for {
		var nfd int
		var sa unix.Sockaddr
		var aerr error
		err := l.rc.Read(func(fd uintptr) bool {
			nfd, sa, aerr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			return aerr != unix.EAGAIN
		})
		if err != nil && l.closed.Load() {
			return nil, net.ErrClosed // the poller's "use of closed file"
		}
		if err != nil {
			return nil, err
		}
		switch aerr {
		case nil:
		case unix.EINTR, unix.ECONNABORTED:
			continue // the connection went before it was accepted
		default:
			return nil, aerr
		}
		if l.allow != nil && !l.allow(sa) {
			unix.Close(nfd) // a peer this listener does not serve
			continue
		}
		remote := l.addr
		switch sa := sa.(type) {
		case *unix.SockaddrVM:
			remote = VsockAddr{CID: sa.CID, Port: sa.Port}
		case *unix.SockaddrUnix:
			remote = &net.UnixAddr{Name: sa.Name, Net: "unix"}
		}
		return &conn{f: os.NewFile(uintptr(nfd), remote.String()), local: l.addr, remote: remote}, nil
	}
}

// Close stops the listener; a waiting Accept returns net.ErrClosed.
func (l *listener) Close() error {
	l.closed.Store(true)
	err := l.f.Close()
	if l.unlink != "" {
		os.Remove(l.unlink)
	}
	return err
}

func (l *listener) Addr() net.Addr { return l.addr }

// conn is an accepted connection: its socket as an *os.File, which reads and writes through
// the runtime's poller and has deadlines.
type conn struct {
	f             *os.File
	local, remote net.Addr
}

func (c *conn) Read(b []byte) (int, error)         { return c.f.Read(b) }
func (c *conn) Write(b []byte) (int, error)        { return c.f.Write(b) }
func (c *conn) Close() error                       { return c.f.Close() }
func (c *conn) LocalAddr() net.Addr                { return c.local }
func (c *conn) RemoteAddr() net.Addr               { return c.remote }
func (c *conn) SetDeadline(t time.Time) error      { return c.f.SetDeadline(t) }
func (c *conn) SetReadDeadline(t time.Time) error  { return c.f.SetReadDeadline(t) }
func (c *conn) SetWriteDeadline(t time.Time) error { return c.f.SetWriteDeadline(t) }

// SyscallConn gives the socket's descriptor (for socket options and credentials).
func (c *conn) SyscallConn() (syscall.RawConn, error) { return c.f.SyscallConn() }
