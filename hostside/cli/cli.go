// Package cli implements the subcommands of the confguest command. Each subcommand lives
// in its own file and registers itself in the command table.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Stdio is the standard streams a command runs with.
type Stdio struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// command is one subcommand: run gets the arguments after the subcommand's name. A
// command made of subcommands of its own (confguest policy generate) lists them in subs
// instead of having a run; Main dispatches to them and prints their usage.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdio Stdio) error
	subs    []command
}

// isHelp reports whether arg asks for usage.
func isHelp(arg string) bool { return arg == "-h" || arg == "--help" || arg == "help" }

// dispatch runs c with args: its run, or the subcommand args[0] names. A command of
// subcommands prints its usage for -h, --help or help (exit 0) and when the subcommand is
// missing or unknown (exit 2).
func (c command) dispatch(ctx context.Context, args []string, stdio Stdio) error {
	if len(c.subs) == 0 {
		return c.run(ctx, args, stdio)
	}
	if len(args) > 0 && isHelp(args[0]) {
		c.usage(stdio.Err)
		return flag.ErrHelp
	}
	if len(args) > 0 {
		for _, s := range c.subs {
			if s.name == args[0] {
				return s.dispatch(ctx, args[1:], stdio)
			}
		}
	}
	c.usage(stdio.Err)
	names := make([]string, len(c.subs))
	for i, s := range c.subs {
		names[i] = s.name
	}
	if len(args) == 0 {
		return usagef("give a subcommand: confguest %s %s ...", c.name, strings.Join(names, "|"))
	}
	return usagef("%s %q: unknown subcommand: want %s", c.name, args[0], strings.Join(names, ", "))
}

// usage prints the subcommands of c.
func (c command) usage(w io.Writer) {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: confguest %s SUBCOMMAND [FLAGS] [ARGS] (confguest %s SUBCOMMAND --help for its flags)\n\nsubcommands:\n", c.name, c.name)
	for _, s := range c.subs {
		fmt.Fprintf(&b, "  %-14s %s\n", s.name, s.summary)
	}
	fmt.Fprint(w, b.String())
}

var commands = map[string]command{}

func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("cli: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

// ExitError makes Main exit with Code without printing anything more (for example, a
// container's own exit status).
type ExitError struct{ Code int }

func (e ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// Main runs the subcommand named by args[0] and returns the process exit status.
func Main(ctx context.Context, args []string, stdio Stdio) int {
	if len(args) == 0 || isHelp(args[0]) {
		usage(stdio.Err)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stdio.Err, "confguest: unknown command %q\n", args[0])
		usage(stdio.Err)
		return 2
	}
	err := c.dispatch(ctx, args[1:], stdio)
	var exit ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.Code
	case errors.Is(err, flag.ErrHelp):
		return 0
	}
	fmt.Fprintf(stdio.Err, "confguest %s: %v\n", c.name, err)
	var usageErr usageError
	if errors.As(err, &usageErr) {
		return 2
	}
	return 1
}

// usageError marks a mistake in the command line (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// newFlags returns a flag set for a subcommand that reports errors instead of exiting.
func newFlags(name string, stdio Stdio) *flag.FlagSet {
	fs := flag.NewFlagSet("confguest "+name, flag.ContinueOnError)
	fs.SetOutput(stdio.Err)
	return fs
}

// parseFlags parses args into fs, turning flag errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	return nil
}

func usage(w io.Writer) {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("usage: confguest COMMAND [FLAGS] [ARGS]\n\ncommands:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprint(w, b.String())
}
