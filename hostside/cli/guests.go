package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"confguest/hostside/launcher"
)

func init() {
	register(command{name: "exec", summary: "run a command in a running guest's container", run: runExec})
	register(command{name: "ps", summary: "list running guests", run: runPs})
	register(command{name: "logs", summary: "print a running guest's container output", run: runLogs})
	register(command{name: "stop", summary: "shut running guests down", run: runStop})
}

func runExec(ctx context.Context, args []string, stdio Stdio) error {
	fs := newFlags("exec", stdio)
	runDir := fs.String("run-dir", launcher.DefaultRunBase(), "state directory of running guests")
	tty := fs.Bool("tty", false, "give the process a terminal")
	fs.BoolVar(tty, "t", false, "short for --tty")
	stdin := fs.Bool("i", false, "pass standard input to the process")
	cwd := fs.String("cwd", "/", "working directory in the container")
	var env stringList
	fs.Var(&env, "env", "KEY=VALUE (repeatable)")
	fs.Usage = func() {
		fmt.Fprintln(stdio.Err, "usage: confguest exec [FLAGS] NAME -- CMD [ARG...]")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) < 2 {
		return usagef("want NAME -- CMD [ARG...]")
	}
	name, cmd := rest[0], rest[1:]
	if cmd[0] == "--" {
		cmd = cmd[1:]
	}
	if len(cmd) == 0 {
		return usagef("no command given after NAME")
	}
	proc, err := launcher.ProcessFromImage(v1.Config{WorkingDir: *cwd}, cmd, env)
	if err != nil {
		return usagef("%v", err)
	}
	proc.TTY, proc.Stdin = *tty, *stdin
	g, st, err := launcher.Attach(ctx, *runDir, name)
	if err != nil {
		return err
	}
	defer g.Release()
	term, _ := setupTTY(stdio, *tty, &proc)
	defer term.restore()
	execID := fmt.Sprintf("exec-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	code, err := g.Exec(ctx, st.ContainerID, execID, proc, launcher.IO{
		Stdin: stdio.In, Stdout: stdio.Out, Stderr: stdio.Err, Resize: term.resize, Warn: term.notes(stdio.Err),
	})
	term.restore()
	if err != nil {
		return err
	}
	if code != 0 {
		return ExitError{Code: code}
	}
	return nil
}

func runPs(ctx context.Context, args []string, stdio Stdio) error {
	fs := newFlags("ps", stdio)
	runDir := fs.String("run-dir", launcher.DefaultRunBase(), "state directory of running guests")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("ps takes no arguments")
	}
	guests, err := launcher.List(*runDir, false)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdio.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVMM\tPIDS\tUP\tCOMMAND")
	for _, g := range guests {
		pids := strings.Trim(strings.Join(strings.Fields(fmt.Sprint(g.PIDs)), ","), "[]")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", g.Name, g.VMM, pids,
			time.Since(g.Created).Round(time.Second), strings.Join(g.Command, " "))
	}
	return tw.Flush()
}

func runLogs(ctx context.Context, args []string, stdio Stdio) error {
	fs := newFlags("logs", stdio)
	runDir := fs.String("run-dir", launcher.DefaultRunBase(), "state directory of running guests")
	follow := fs.Bool("f", false, "follow the output until the container exits")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want exactly one guest NAME")
	}
	g, st, err := launcher.Attach(ctx, *runDir, fs.Arg(0))
	if err != nil {
		return err
	}
	defer g.Release()
	return g.Logs(ctx, st.ContainerID, launcher.IO{Stdout: stdio.Out, Stderr: stdio.Err, Warn: stdio.Err}, *follow, 500*time.Millisecond)
}

func runStop(ctx context.Context, args []string, stdio Stdio) error {
	fs := newFlags("stop", stdio)
	runDir := fs.String("run-dir", launcher.DefaultRunBase(), "state directory of running guests")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("want one or more guest NAMEs")
	}
	var errs []error
	for _, name := range fs.Args() {
		if err := launcher.Stop(ctx, *runDir, name); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintln(stdio.Out, name)
	}
	return errors.Join(errs...)
}
