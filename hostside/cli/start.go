package cli

import (
	"context"
	"fmt"

	"confguest/hostside/launcher"
)

func init() {
	register(command{
		name:    "start",
		summary: "boot a long-running guest with a container (see exec, ps, logs, stop)",
		run:     runStart,
	})
}

func runStart(ctx context.Context, args []string, stdio Stdio) (err error) {
	var f launchFlags
	fs := newFlags("start", stdio)
	f.register(fs, true)
	fs.Usage = func() {
		fmt.Fprintln(stdio.Err, "usage: confguest start --name NAME [FLAGS] (--rootfs DIR | --oci PATH | --pull REF) [-- CMD [ARG...]]")
		fmt.Fprintln(stdio.Err, "The guest obeys --policy FILE, or else a policy generated for this container that allows")
		fmt.Fprintln(stdio.Err, "confguest logs and stop, and confguest exec only of the --exec commands.")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if f.name == "" {
		return usagef("--name is required")
	}
	if err := launcher.CheckName(f.name); err != nil {
		return usagef("%v", err)
	}
	src, err := f.source()
	if err != nil {
		return err
	}
	o, err := f.options(stdio)
	if err != nil {
		return err
	}
	o.Detach = true
	sb, err := launcher.New(ctx, o)
	if err != nil {
		return err
	}
	started := false
	defer func() {
		if !started {
			tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), teardownTimeout)
			defer cancel()
			sb.Close(tctx)
		}
		if o.Timings != nil {
			o.Timings.Print(stdio.Err)
		}
	}()
	disk, err := f.buildDisk(ctx, sb, src, stdio)
	if err != nil {
		return err
	}
	proc, err := launcher.ProcessFromImage(disk.Config, fs.Args(), f.env)
	if err != nil {
		return usagef("%v", err)
	}
	doc, err := f.policy(disk, proc)
	if err != nil {
		return err
	}
	g, err := sb.Boot(ctx, doc)
	if err != nil {
		return err
	}
	if err := g.StartContainer(ctx, containerID, disk, proc); err != nil {
		return err
	}
	if err := g.SetContainer(containerID, proc.Args); err != nil {
		return err
	}
	g.Detach()
	started = true
	fmt.Fprintln(stdio.Out, f.name)
	return nil
}

// containerID is the id of the one container of a guest started by run or start.
const containerID = "ctr"
