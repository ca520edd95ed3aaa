package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"confguest/agent/api/policy"
	"confguest/hostside/image"
	"confguest/hostside/launcher"
	"confguest/hostside/vmm"
)

func init() {
	register(command{
		name:    "run",
		summary: "boot the guest, run one container in it, shut the guest down",
		run:     runRun,
	})
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// launchFlags are the flags run and start share.
type launchFlags struct {
	vmm, imageDir, rootfsDir, oci, pull, accel, memory, runDir string
	name                                                       string
	cpus                                                       int
	tty, stdin, timings, quiet                                 bool
	env, exec                                                  stringList
	bootTimeout                                                time.Duration
	vhost, hostData, policyFile, ovmf                          string
	signed                                                     string
	snp                                                        bool
	policyDoc                                                  []byte // --policy's document
}

func (f *launchFlags) register(fs *flag.FlagSet, withName bool) {
	fs.StringVar(&f.vmm, "vmm", launcher.QEMU, "VMM: qemu or cloud-hypervisor")
	fs.StringVar(&f.imageDir, "image", "out", "guest image directory (make image's output)")
	fs.StringVar(&f.rootfsDir, "rootfs", "", "container rootfs: a directory")
	fs.StringVar(&f.oci, "oci", "", "container rootfs: an OCI image layout directory or a docker save archive")
	fs.StringVar(&f.pull, "pull", "", "container rootfs: an image reference to pull from a registry")
	fs.StringVar(&f.accel, "accel", string(vmm.AccelAuto), "QEMU accelerator: auto (KVM if a vCPU really runs), kvm or tcg")
	fs.StringVar(&f.memory, "memory", "512M", "guest memory (e.g. 256M, 1G)")
	fs.IntVar(&f.cpus, "cpus", 1, "guest vCPUs")
	fs.Var(&f.env, "env", "KEY=VALUE for the container (repeatable)")
	fs.BoolVar(&f.timings, "timings", false, "print where the time went")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress lines")
	fs.StringVar(&f.runDir, "run-dir", launcher.DefaultRunBase(), "state directory of running guests")
	fs.DurationVar(&f.bootTimeout, "boot-timeout", 120*time.Second, "give up if the agent does not answer within this time")
	fs.StringVar(&f.vhost, "vhost-device-vsock", "", "vhost-device-vsock binary (default: from PATH)")
	fs.BoolVar(&f.snp, "snp", false, "boot as an AMD SEV-SNP guest: QEMU with OVMF measuring kernel, initramfs and cmdline, or Cloud Hypervisor with guest.igvm (KVM on an SNP host only)")
	fs.StringVar(&f.hostData, "host-data", "", "SEV-SNP HOST_DATA: 64 hex digits copied into every attestation report; it must be the SHA-256 of the policy sent (the default)")
	fs.StringVar(&f.policyFile, "policy", "", "agent policy file, sent to the agent before anything else; with --snp its SHA-256 becomes HOST_DATA (default: the policy confguest policy generate writes for this rootfs, command and flags)")
	fs.StringVar(&f.signed, "signed", "", "DSSE envelope (cosign attest's, or confguest image attest --key's) vouching for the container's disk, for a policy entry that pins the rootfs by signer (default with --pull: the image's cosign attestation in its registry, if any)")
	fs.StringVar(&f.ovmf, "ovmf", "", "firmware for --snp --vmm qemu (default: the pinned ovmf-amdsev from build/debpin.sh)")
	if withName {
		fs.StringVar(&f.name, "name", "", "name of the guest (required)")
		fs.Var(&f.exec, "exec", `without --policy: allow confguest exec of this command (a command line split at spaces, or a JSON array such as '["sh", "-c", "echo hi"]'; repeatable); no exec is allowed otherwise`)
	} else {
		fs.BoolVar(&f.tty, "tty", false, "give the container a terminal")
		fs.BoolVar(&f.tty, "t", false, "short for --tty")
		fs.BoolVar(&f.stdin, "i", false, "pass standard input to the container")
	}
}

// source returns the one container rootfs source given.
func (f *launchFlags) source() (image.Source, error) {
	return rootfsSource(f.rootfsDir, f.oci, f.pull)
}

// rootfsSource returns the one container rootfs source of --rootfs, --oci and --pull,
// checked (run, start and policy generate take the same three flags).
func rootfsSource(dir, oci, pull string) (image.Source, error) {
	var srcs []image.Source
	if dir != "" {
		srcs = append(srcs, image.Source{Kind: image.Dir, Ref: dir})
	}
	if oci != "" {
		srcs = append(srcs, image.OCISource(oci))
	}
	if pull != "" {
		srcs = append(srcs, image.Source{Kind: image.Registry, Ref: pull})
	}
	if len(srcs) != 1 {
		return image.Source{}, usagef("give exactly one of --rootfs DIR, --oci PATH, --pull REF")
	}
	return srcs[0], srcs[0].Check()
}

// buildDisk builds the container disk of src in sb with the envelope that vouches for it:
// --signed's file, or else for --pull the newest confguest attestation cosign attached to the
// image in its registry (none: the disk goes without one, and only an entry that pins its
// root hash admits it). A pulled image is pinned to its digest first, so the disk and the
// attestation are of the same image.
func (f *launchFlags) buildDisk(ctx context.Context, sb *launcher.Sandbox, src image.Source, stdio Stdio) (launcher.Disk, error) {
	var env []byte
	if f.signed != "" {
		b, err := os.ReadFile(f.signed)
		if err != nil {
			return launcher.Disk{}, fmt.Errorf("read --signed: %w", err)
		}
		env = b
	}
	if src.Kind == image.Registry {
		d, err := image.Resolve(ctx, src.Ref)
		if err != nil {
			return launcher.Disk{}, err
		}
		src.Ref = d.String()
		if env == nil {
			if env, err = image.FindAttestation(ctx, d); err != nil {
				return launcher.Disk{}, err
			}
			if env != nil && !f.quiet {
				fmt.Fprintf(stdio.Err, "confguest: found the image's attestation (%s)\n", d.DigestStr())
			}
		}
	}
	disk, err := sb.BuildDisk(ctx, src)
	if err != nil {
		return launcher.Disk{}, err
	}
	disk.Attestation = env
	return disk, nil
}

// options turns the flags into launcher options.
func (f *launchFlags) options(stdio Stdio) (launcher.Options, error) {
	if err := launcher.CheckVMM(f.vmm); err != nil {
		return launcher.Options{}, usagef("%v", err)
	}
	mem, err := parseMemory(f.memory)
	if err != nil {
		return launcher.Options{}, usagef("%v", err)
	}
	if mem < vmm.MinMemoryMiB {
		return launcher.Options{}, usagef("--memory %s is too small: the guest needs at least %dM", f.memory, vmm.MinMemoryMiB)
	}
	switch vmm.Accel(f.accel) {
	case vmm.AccelAuto, vmm.AccelKVM, vmm.AccelTCG:
	default:
		return launcher.Options{}, usagef("--accel %q: want auto, kvm or tcg", f.accel)
	}
	if f.cpus < 1 || f.cpus > 255 {
		return launcher.Options{}, usagef("--cpus %d: want 1 to 255", f.cpus)
	}
	if f.snp && vmm.Accel(f.accel) == vmm.AccelTCG {
		return launcher.Options{}, usagef("--snp runs under KVM only: drop --accel %s", f.accel)
	}
	if !f.snp && f.ovmf != "" {
		return launcher.Options{}, usagef("--ovmf is for --snp launches")
	}
	o := launcher.Options{
		ImageDir: f.imageDir, VMM: f.vmm, Accel: vmm.Accel(f.accel), CPUs: f.cpus, MemoryMiB: mem,
		RunBase: f.runDir, Name: f.name, BootTimeout: f.bootTimeout, SEVSNP: f.snp, HostData: f.hostData,
		OVMF: f.ovmf,
	}
	if f.policyFile != "" && len(f.exec) > 0 {
		return launcher.Options{}, usagef("--exec writes exec rules into the generated policy: with --policy, list the commands in the policy's exec")
	}
	if f.policyFile != "" {
		doc, err := os.ReadFile(f.policyFile)
		if err != nil {
			return launcher.Options{}, fmt.Errorf("read --policy: %w", err)
		}
		if _, err := policy.Parse(doc); err != nil {
			return launcher.Options{}, fmt.Errorf("%s: %w: fix the policy (confguest policy generate writes one)", f.policyFile, err)
		}
		f.policyDoc = doc
	}
	if f.vhost != "" {
		o.QEMU = append(o.QEMU, vmm.WithVhostDeviceVsock(f.vhost))
	}
	if !f.quiet {
		o.Progress = stdio.Err
	}
	if f.timings {
		o.Timings = launcher.NewTimings()
	}
	return o, nil
}

// policy is the guest's policy once the container disk is built: the --policy file, or
// else the policy confguest policy generate writes for the same rootfs, command and flags
// (entry "main"; output readable; stdin and TTY as asked; exec only of --exec commands;
// shutdown allowed, which run and stop need).
func (f *launchFlags) policy(disk launcher.Disk, proc launcher.Process) ([]byte, error) {
	if f.policyDoc != nil {
		return f.policyDoc, nil
	}
	return f.generatedPolicy(disk.Disk, proc)
}

// generatedPolicy is the policy confguest policy generate writes for the container proc
// on disk, with these flags.
func (f *launchFlags) generatedPolicy(disk image.Disk, proc launcher.Process) ([]byte, error) {
	gf := generateFlags{name: "main", env: f.env, exec: f.exec, tty: proc.TTY, stdin: proc.Stdin, shutdown: true, getReport: true}
	return generatePolicy(gf, launcher.PolicyEntry(gf.name, disk.Verity.RootHash, launcher.ContainerSpec(proc, containerID)))
}

// parseMemory reads sizes like 512M, 1G, 2048 (MiB) and returns MiB.
func parseMemory(s string) (int, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B"), "I")
	mult := 1
	switch {
	case strings.HasSuffix(t, "G"):
		mult, t = 1024, strings.TrimSuffix(t, "G")
	case strings.HasSuffix(t, "M"):
		t = strings.TrimSuffix(t, "M")
	}
	n, err := strconv.Atoi(t)
	if err != nil || n <= 0 || n > 1<<20 {
		return 0, fmt.Errorf("--memory %q: want a size such as 512M or 1G", s)
	}
	return n * mult, nil
}

// teardownTimeout bounds shutting a guest down after the run or on a signal.
const teardownTimeout = 15 * time.Second

func runRun(ctx context.Context, args []string, stdio Stdio) (err error) {
	var f launchFlags
	fs := newFlags("run", stdio)
	f.register(fs, false)
	fs.Usage = func() {
		fmt.Fprintln(stdio.Err, "usage: confguest run [FLAGS] (--rootfs DIR | --oci PATH | --pull REF) [-- CMD [ARG...]]")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	src, err := f.source()
	if err != nil {
		return err
	}
	o, err := f.options(stdio)
	if err != nil {
		return err
	}
	sb, err := launcher.New(ctx, o)
	if err != nil {
		return err
	}
	defer func() {
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), teardownTimeout)
		defer cancel()
		if cerr := sb.Close(tctx); cerr != nil && err == nil {
			err = cerr
		}
		if o.Timings != nil {
			o.Timings.Print(stdio.Err)
		}
		if ctx.Err() != nil {
			fmt.Fprintln(stdio.Err, "confguest run: interrupted; the guest was shut down")
			err = ExitError{Code: 130}
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
	proc.TTY, proc.Stdin = f.tty, f.stdin
	term, err := setupTTY(stdio, f.tty, &proc)
	if err != nil {
		return err
	}
	defer term.restore()
	doc, err := f.policy(disk, proc)
	if err != nil {
		return err
	}
	g, err := sb.Boot(ctx, doc)
	if err != nil {
		return err
	}
	wctx, unwatch := g.WatchVM(ctx)
	code, err := g.RunContainer(wctx, containerID, disk, proc, launcher.IO{
		Stdin: stdio.In, Stdout: stdio.Out, Stderr: stdio.Err, Resize: term.resize, Warn: term.notes(stdio.Err),
	})
	unwatch()
	term.restore()
	if err != nil {
		if cause := context.Cause(wctx); errors.Is(cause, launcher.ErrVMMDied) {
			return fmt.Errorf("%w (%v)", cause, err) // err names the step the VM died in
		}
		if ctx.Err() != nil {
			return nil // reported by the deferred teardown
		}
		// A broken agent connection is often the VMM's death seen first.
		if derr := g.VMMDied(2 * time.Second); derr != nil {
			return fmt.Errorf("%w (%v)", derr, err)
		}
		return err
	}
	if code != 0 {
		return ExitError{Code: code}
	}
	return nil
}

// stdinFile returns stdio.In as a file if it is one.
func stdinFile(stdio Stdio) *os.File {
	f, _ := stdio.In.(*os.File)
	return f
}
