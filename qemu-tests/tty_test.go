package qemutests

// A TTY container's output arrives byte for byte, through the containerd shim and through
// confguest run.
//
// script(1) gives the command it runs a terminal. When script's own standard input is not
// a terminal and reaches end-of-file, script (util-linux 2.38) writes a NUL byte into that
// terminal. ctr run -t and confguest run -i -t forward it to the container, whose terminal
// echoes it as "^@" in front of the output (runc's own shim, io.containerd.runc.v2, shows
// the same). So runInTerminal keeps script's standard input open until the command ended.

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// terminalArgs are the arguments of script(1) that run argv on a terminal of 30 rows and
// 100 columns.
func terminalArgs(argv ...string) []string {
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return []string{"-qec", "stty cols 100 rows 30; " + strings.Join(quoted, " "), "/dev/null"}
}

// runInTerminal runs cmd, a script(1) command, with its standard input a pipe that stays
// open until cmd exited, and returns what the terminal showed and cmd's exit code.
func runInTerminal(t *testing.T, cmd *exec.Cmd) (string, int) {
	t.Helper()
	if _, err := exec.LookPath("script"); err != nil {
		missing(t, "script(1) not found: install bsdutils")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	defer r.Close()
	var out, errOut bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = r, &out, &errOut
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("%s: %v\nstderr:\n%s", cmd, err, errOut.String())
	}
	return out.String(), 0
}

// ttyCommand is what the TTY containers run: output without a newline, so that the
// terminals' newline translation does not enter the comparison.
var ttyCommand = []string{"sh", "-c", "printf 'first bytes'; exit 3"}

const ttyWant = "first bytes"

func TestTTYOutputExactShim(t *testing.T) {
	e := startContainerd(t, ctrdOptions{})
	ref := e.importBusybox("confguest/busybox:test")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	argv := append([]string{e.ctrPath, "--address", e.sock, "--namespace", e.ns, "run", "-t", "--rm", "--runtime", shimRuntime, ref, "tty-exact"}, ttyCommand...)
	out, code := runInTerminal(t, exec.CommandContext(ctx, "script", terminalArgs(argv...)...))
	if out != ttyWant || code != 3 {
		t.Errorf("ctr run -t %q = output %q, exit %d; want %q, 3", ttyCommand, out, code, ttyWant)
	}
	e.checkNoLeftovers("tty-exact")
}

func TestTTYOutputExactCLI(t *testing.T) {
	e := newCLIEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	argv := append(append(append([]string{e.bin, "run", "--quiet", "-i", "-t"}, e.launchFlags()...), "--rootfs", e.rootfs, "--"), ttyCommand...)
	out, code := runInTerminal(t, e.program(ctx, "script", terminalArgs(argv...)...))
	if out != ttyWant || code != 3 {
		t.Errorf("confguest run -i -t %q = output %q, exit %d; want %q, 3", ttyCommand, out, code, ttyWant)
	}
	e.checkNoLeftovers()
}
