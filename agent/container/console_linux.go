package container

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// newConsoleSocket returns the two ends of the socket libcontainer sends
// the TTY master over: ours and the one given to the process.
func newConsoleSocket() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("create console socket: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "console-parent"), os.NewFile(uintptr(fds[1]), "console-child"), nil
}

// recvConsole receives the TTY master sent by the container's init.
func recvConsole(sock *os.File) (*os.File, error) {
	name := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), name, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("receive tty master: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("receive tty master: bad control message (%d messages): %v", len(msgs), err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("receive tty master: want one descriptor, got %d: %v", len(fds), err)
	}
	return os.NewFile(uintptr(fds[0]), string(name[:n])), nil
}

func resizeConsole(f *os.File, width, height uint32) error {
	if width > 0xffff || height > 0xffff {
		return fieldErr("width", "tty size %dx%d larger than 65535", width, height)
	}
	ws := &unix.Winsize{Col: uint16(width), Row: uint16(height)}
	if err := unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, ws); err != nil {
		return fmt.Errorf("resize tty: %w", err)
	}
	return nil
}
