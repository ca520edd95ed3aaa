package cli

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"confguest/hostside/launcher"
)

// openPTY returns both ends of a new pseudo-terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty slave: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// While a TTY container runs, the host terminal is raw (no output processing), so the
// launcher's notes end their lines in CR LF; without a terminal they are written as they are.
func TestTerminalNotes(t *testing.T) {
	_, slave := openPTY(t)
	var p launcher.Process
	term, err := setupTTY(Stdio{In: slave, Out: slave, Err: slave}, true, &p)
	if err != nil {
		t.Fatalf("setupTTY: %v", err)
	}
	defer term.restore()
	st, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil || st.Oflag&unix.OPOST != 0 {
		t.Fatalf("terminal after setupTTY: oflag %#x (%v), want raw (OPOST off)", st.Oflag, err)
	}
	var buf bytes.Buffer
	n, err := fmt.Fprint(term.notes(&buf), "confguest: one\nconfguest: two\n")
	if err != nil || n != 30 {
		t.Errorf("write to notes = %d, %v; want 30 (the bytes given), nil", n, err)
	}
	if got, want := buf.String(), "confguest: one\r\nconfguest: two\r\n"; got != want {
		t.Errorf("notes on a raw terminal wrote %q, want %q", got, want)
	}

	plain, err := setupTTY(Stdio{In: bytes.NewReader(nil), Out: &buf, Err: &buf}, true, &p)
	if err != nil {
		t.Fatalf("setupTTY without a terminal: %v", err)
	}
	var out bytes.Buffer
	if w := plain.notes(&out); w != &out {
		t.Errorf("notes without a terminal = %T, want the writer itself", w)
	}
}
