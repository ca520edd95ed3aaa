package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"confguest/agent/childexit"
	"confguest/agent/libct"
	"confguest/agent/output"
)

// ExitStatus is how a process ended.
type ExitStatus struct {
	Code     int // exit code, or 128+Signal when killed
	Signal   int // the signal that killed it, 0 if it exited
	ExitedAt time.Time
}

// Process is a container's init or exec'd process and its stdio.
type Process struct {
	id   string      // "" for the init process
	proc *os.Process // the agent's child once the helper that started it exited
	pid  int

	mu      sync.Mutex
	stdin   *os.File // write end of the stdin pipe; nil if none or closed
	console *os.File // TTY master, nil without a terminal
	ttyIn   bool     // stdin requested on a terminal process

	stdout, stderr *output.Buffer

	done    chan struct{} // closed when the process exited
	settled chan struct{} // closed when its output ended too, see OutputGrace
	status  ExitStatus

	// set up before start, released after
	consoleIn *os.File
	// the process's ends, passed to the helper that starts it, closed once it has them
	childIn, childOut, childErr, childConsole *os.File
}

// prepareIO creates the stdio of a process before it starts.
func prepareIO(terminal, stdin bool, limit int) (*Process, error) {
	p := &Process{
		stdout:  output.NewBuffer(limit),
		stderr:  output.NewBuffer(limit),
		done:    make(chan struct{}),
		settled: make(chan struct{}),
	}
	if terminal {
		parent, child, err := newConsoleSocket()
		if err != nil {
			return nil, err
		}
		p.childConsole = child
		p.consoleIn = parent
		p.ttyIn = stdin
		return p, nil
	}
	var ok bool
	defer func() {
		if !ok {
			p.closeIO()
		}
	}()
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("create stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("create stderr pipe: %w", err)
	}
	p.childOut, p.childErr = outW, errW
	go drainAndClose(p.stdout, outR)
	go drainAndClose(p.stderr, errR)
	if stdin {
		inR, inW, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("create stdin pipe: %w", err)
		}
		p.childIn = inR
		p.stdin = inW
	}
	ok = true
	return p, nil
}

// passTo names the process's ends of its stdio in req and returns the files to pass to
// the helper, as descriptors 3 and up in that order.
func (p *Process) passTo(req *libct.Request) []*os.File {
	var files []*os.File
	pass := func(f *os.File) int {
		if f == nil {
			return 0
		}
		files = append(files, f)
		return 2 + len(files)
	}
	req.Stdin, req.Stdout, req.Stderr = pass(p.childIn), pass(p.childOut), pass(p.childErr)
	req.ConsoleSocket = pass(p.childConsole)
	return files
}

// started finishes stdio setup once the helper started the process as pid and exited,
// which made the process the agent's child, and begins waiting for its exit.
// On error the process may still run: the caller kills it, and the wait
// goroutine (always started) reaps it.
func (p *Process) started(pid int) error {
	p.closeChildFiles()
	p.pid = pid
	// A child that has not been reaped keeps its PID, so the handle names this process; it
	// is a pidfd, so a signal sent after the process was reaped fails instead of reaching
	// another process that reused the PID.
	p.proc, _ = os.FindProcess(pid) // never fails on Linux
	go p.wait()
	if p.consoleIn != nil {
		master, err := recvConsole(p.consoleIn)
		p.consoleIn.Close()
		p.consoleIn = nil
		if err != nil {
			p.stdout.Close() // no drain will ever end it
			return err
		}
		p.mu.Lock()
		p.console = master
		p.mu.Unlock()
		p.stderr.Close() // a terminal has one output stream
		go output.Drain(p.stdout, master)
	}
	return nil
}

func (p *Process) wait() {
	childexit.Await(p.pid) // a process that runs for days holds no thread of the agent
	st, err := p.proc.Wait()
	s := ExitStatus{Code: -1, ExitedAt: time.Now()}
	if st != nil {
		if ws, ok := st.Sys().(syscall.WaitStatus); ok {
			switch {
			case ws.Signaled():
				s.Signal = int(ws.Signal())
				s.Code = 128 + s.Signal
			case ws.Exited():
				s.Code = ws.ExitStatus()
			}
		}
	} else if err != nil {
		s.Code = -1
	}
	p.status = s
	close(p.done)
	p.awaitOutput()
	close(p.settled)
}

// OutputGrace bounds how long a process's exit is held back, after it
// exited, for its output streams to end.
//
// Bytes the process wrote just before exiting may still sit in the pipe
// (or TTY) on their way into the output buffer. Until they are in, how
// much of them a reader attaching later receives depends on timing (an
// attached reader gets them all, an absent one only the newest
// Config.OutputLimit bytes). So Wait reports the exit once both streams
// ended, which makes the output final: a reader attaching after Wait gets
// exactly the newest OutputLimit bytes and the count of the rest.
//
// A stream ends when every writer closed it. A process that leaves a
// background child holding its stdout, or whose attached reader stopped
// reading, would hold Wait back for as long: after OutputGrace the exit
// is reported anyway, and the output keeps flowing to its reader.
const OutputGrace = time.Second

// awaitOutput waits for both output streams to end, at most OutputGrace.
func (p *Process) awaitOutput() {
	grace := time.NewTimer(OutputGrace)
	defer grace.Stop()
	for _, b := range []*output.Buffer{p.stdout, p.stderr} {
		select {
		case <-b.Ended():
		case <-grace.C:
			return
		}
	}
}

// Wait blocks until the process exited and its output ended (at most
// OutputGrace after the exit), or ctx ends.
func (p *Process) Wait(ctx context.Context) (ExitStatus, error) {
	select {
	case <-p.settled:
		return p.status, nil
	case <-ctx.Done():
		return ExitStatus{}, ctx.Err()
	}
}

func (p *Process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// writeStdin writes data into the process's stdin, waiting while the
// process does not read (until ctx ends).
func (p *Process) writeStdin(ctx context.Context, data []byte) (int, error) {
	p.mu.Lock()
	w := p.stdin
	if p.console != nil && p.ttyIn {
		w = p.console
	}
	p.mu.Unlock()
	if w == nil {
		return 0, fmt.Errorf("write stdin: %w: the process has no open stdin (create it with stdio.stdin set)", ErrWrongState)
	}
	stop := context.AfterFunc(ctx, func() { w.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	n, err := w.Write(data)
	if err != nil {
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		if errors.Is(err, os.ErrClosed) {
			return n, fmt.Errorf("write stdin: %w: stdin was closed", ErrWrongState)
		}
		return n, fmt.Errorf("write stdin: %w", err)
	}
	return n, nil
}

// closeStdin closes stdin; on a terminal it sends end-of-file (^D).
func (p *Process) closeStdin() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.console != nil && p.ttyIn {
		p.ttyIn = false
		if _, err := p.console.Write([]byte{4}); err != nil {
			return fmt.Errorf("send end-of-file to tty: %w", err)
		}
		return nil
	}
	if p.stdin == nil {
		return fmt.Errorf("close stdin: %w: the process has no open stdin", ErrWrongState)
	}
	err := p.stdin.Close()
	p.stdin = nil
	return err
}

func (p *Process) resize(width, height uint32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.console == nil {
		return fmt.Errorf("resize tty: %w: the process has no terminal", ErrWrongState)
	}
	return resizeConsole(p.console, width, height)
}

// closeIO releases the agent's ends of the process's stdio and ends its
// output streams (a drain waiting for an attached but idle reader lets go).
func (p *Process) closeIO() {
	p.stdout.Close()
	p.stderr.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeChildFiles()
	for _, f := range []*os.File{p.consoleIn, p.stdin, p.console} {
		if f != nil {
			f.Close()
		}
	}
	p.consoleIn, p.stdin, p.console = nil, nil, nil
}

// closeChildFiles closes the process's ends of its stdio, once it has them or will not.
func (p *Process) closeChildFiles() {
	for _, f := range []*os.File{p.childIn, p.childOut, p.childErr, p.childConsole} {
		if f != nil {
			f.Close()
		}
	}
	p.childIn, p.childOut, p.childErr, p.childConsole = nil, nil, nil, nil
}

// Output returns the buffer of stdout (or the TTY) or stderr.
func (p *Process) Output(stderr bool) *output.Buffer {
	if stderr {
		return p.stderr
	}
	return p.stdout
}

func drainAndClose(b *output.Buffer, r *os.File) {
	output.Drain(b, r)
	r.Close()
}
