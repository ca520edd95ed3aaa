package cli

import (
	"bytes"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"confguest/hostside/launcher"
)

// terminal is the host terminal while a container has a TTY: raw mode and window size.
type terminal struct {
	fd     int
	saved  *unix.Termios
	resize chan [2]uint32
	stop   func()
	once   sync.Once
}

// setupTTY puts the host terminal into raw mode and starts forwarding window sizes when
// the container gets a TTY and standard input is a terminal. Without one it does nothing.
func setupTTY(stdio Stdio, tty bool, p *launcher.Process) (*terminal, error) {
	t := &terminal{fd: -1}
	f := stdinFile(stdio)
	if !tty || f == nil {
		return t, nil
	}
	fd := int(f.Fd())
	saved, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return t, nil // not a terminal: the TTY lives in the guest only
	}
	if ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ); err == nil {
		p.Width, p.Height = uint32(ws.Col), uint32(ws.Row)
	}
	raw := *saved
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return t, nil
	}
	t.fd, t.saved = fd, saved
	t.resize = make(chan [2]uint32, 1)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGWINCH)
	quit := make(chan struct{})
	go func() {
		for {
			select {
			case <-sig:
				if ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ); err == nil {
					select {
					case t.resize <- [2]uint32{uint32(ws.Col), uint32(ws.Row)}:
					default:
					}
				}
			case <-quit:
				return
			}
		}
	}()
	t.stop = func() { signal.Stop(sig); close(quit) }
	return t, nil
}

// restore gives the terminal back its settings; safe to call more than once.
func (t *terminal) restore() {
	t.once.Do(func() {
		if t.saved != nil {
			unix.IoctlSetTermios(t.fd, unix.TCSETS, t.saved)
		}
		if t.stop != nil {
			t.stop()
		}
	})
}

// notes returns the writer for the launcher's notes (lost or hidden output) to w: while
// the terminal is raw, output processing is off and a bare line feed would not return the
// cursor, so each line ends in CR LF.
func (t *terminal) notes(w io.Writer) io.Writer {
	if t.saved == nil {
		return w
	}
	return crlfWriter{w}
}

// crlfWriter writes each line feed as CR LF.
type crlfWriter struct{ w io.Writer }

func (c crlfWriter) Write(p []byte) (int, error) {
	if _, err := c.w.Write(bytes.ReplaceAll(p, []byte("\n"), []byte("\r\n"))); err != nil {
		return 0, err
	}
	return len(p), nil
}
