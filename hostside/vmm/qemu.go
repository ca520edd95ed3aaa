package vmm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Accel selects QEMU's accelerator.
type Accel string

// Accelerators. AccelAuto uses KVM only if ProbeKVM's guest runs in time, else TCG.
const (
	AccelAuto Accel = "auto"
	AccelKVM  Accel = "kvm"
	AccelTCG  Accel = "tcg"
)

type qemuOptions struct {
	qemu      string
	vhost     string
	accel     Accel
	kvmDevice string
	detach    bool
	snp       *SNPLaunch // set by WithSEVSNP
	snpParam  string     // set by WithSNPProbe
}

// QEMUOption configures StartQEMU.
type QEMUOption func(*qemuOptions)

// WithQEMU sets the QEMU binary (default qemu-system-x86_64 from PATH).
func WithQEMU(path string) QEMUOption { return func(o *qemuOptions) { o.qemu = path } }

// WithVhostDeviceVsock sets the vhost-device-vsock binary (default: from PATH).
func WithVhostDeviceVsock(path string) QEMUOption { return func(o *qemuOptions) { o.vhost = path } }

// WithAccel sets the accelerator (default AccelAuto).
func WithAccel(a Accel) QEMUOption { return func(o *qemuOptions) { o.accel = a } }

// WithDetach makes the VM outlive the calling process (for long-running guests): its
// processes get their own session and are not killed when the caller exits.
func WithDetach() QEMUOption { return func(o *qemuOptions) { o.detach = true } }

// File names inside Config.RunDir.
const (
	VsockSocket  = "vm.vsock"
	ConsoleLog   = "console.log"
	QMPSocket    = "qmp.sock"
	vhostSocket  = "vhost.sock"
	qemuLog      = "qemu.log"
	vhostLog     = "vhost-device-vsock.log"
	qemuBinary   = "qemu-system-x86_64"
	vhostBinary  = "vhost-device-vsock"
	vhostInstall = "run build/debpin.sh vhost-device-vsock and put its usr/bin on PATH"
)

// ResolveAccel turns AccelAuto into KVM or TCG by probing dev; the reason for TCG is
// returned for progress output.
func ResolveAccel(ctx context.Context, a Accel, dev string) (Accel, error) {
	if a != AccelAuto && a != "" {
		if a != AccelKVM && a != AccelTCG {
			return "", fmt.Errorf("accelerator %q: want auto, kvm or tcg", a)
		}
		return a, nil
	}
	if err := ProbeKVM(ctx, dev, time.Second); err != nil {
		return AccelTCG, fmt.Errorf("KVM probe: %w", err)
	}
	return AccelKVM, nil
}

// qemuArgs is QEMU's command line for cfg (without the binary).
func qemuArgs(cfg Config, accel Accel) []string {
	mem := strconv.Itoa(cfg.MemoryMiB) + "M"
	args := []string{
		"-name", "confguest",
		"-machine", "pc",
		"-accel", string(accel),
	}
	if accel == AccelKVM {
		args = append(args, "-cpu", "host")
	}
	args = append(args,
		"-m", mem,
		"-smp", strconv.Itoa(cfg.CPUs),
		"-nodefaults", "-no-user-config", "-no-reboot", "-display", "none",
		// vhost-user needs guest memory the backend can map: a shared memfd.
		"-object", "memory-backend-memfd,id=mem,size="+mem+",share=on",
		"-numa", "node,memdev=mem",
	)
	return append(args, qemuDevices(cfg, "")...)
}

// qemuDevices is the part of QEMU's command line shared by plain and SEV-SNP launches:
// vsock, rng, kernel, disks, console and QMP. devOpts is appended to every virtio device.
func qemuDevices(cfg Config, devOpts string) []string {
	run := func(name string) string { return qemuEscape(filepath.Join(cfg.RunDir, name)) }
	args := []string{
		"-chardev", "socket,id=vsock,path=" + run(vhostSocket),
		"-device", "vhost-user-vsock-pci,chardev=vsock" + devOpts,
		"-device", "virtio-rng-pci" + devOpts,
		"-kernel", cfg.Kernel,
	}
	if cfg.Initramfs != "" {
		args = append(args, "-initrd", cfg.Initramfs)
	}
	args = append(args, "-append", cfg.Cmdline)
	for i, d := range cfg.Disks {
		drive := fmt.Sprintf("file=%s,if=none,id=disk%d,format=raw", qemuEscape(d.Path), i)
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		dev := fmt.Sprintf("virtio-blk-pci,drive=disk%d", i)
		if d.Serial != "" {
			dev += ",serial=" + d.Serial
		}
		args = append(args, "-drive", drive, "-device", dev+devOpts)
	}
	// The taps are QEMU's inherited files: the first is fd 3 (startProc's extra files).
	// No option ROM: the guest boots its kernel directly.
	for i, n := range cfg.NICs {
		args = append(args,
			"-netdev", fmt.Sprintf("tap,id=net%d,fd=%d", i, 3+i),
			"-device", fmt.Sprintf("virtio-net-pci,netdev=net%d,mac=%s,romfile=", i, n.MAC)+devOpts)
	}
	return append(args,
		"-serial", "file:"+filepath.Join(cfg.RunDir, ConsoleLog),
		"-qmp", "unix:"+run(QMPSocket)+",server=on,wait=off",
	)
}

// vhostArgs is vhost-device-vsock's command line for cfg.
func vhostArgs(cfg Config) []string {
	return []string{"--vm", fmt.Sprintf("guest-cid=%d,socket=%s,uds-path=%s",
		cfg.GuestCID, filepath.Join(cfg.RunDir, vhostSocket), filepath.Join(cfg.RunDir, VsockSocket))}
}

// qemuEscape doubles commas, QEMU's escape inside option values.
func qemuEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// lookPath finds a program or explains how to install it.
func lookPath(name, given, install string) (string, error) {
	if given != "" {
		if _, err := os.Stat(given); err != nil {
			return "", fmt.Errorf("%s: %w (%s)", given, ErrNotFound, install)
		}
		return given, nil
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s is not on PATH: %w (%s)", name, ErrNotFound, install)
	}
	return p, nil
}

// StartQEMU starts vhost-device-vsock and QEMU for cfg and returns once both run. On any
// failure everything started so far is stopped again.
func StartQEMU(ctx context.Context, cfg Config, opts ...QEMUOption) (VM, error) {
	o := qemuOptions{accel: AccelAuto, kvmDevice: "/dev/kvm"}
	for _, opt := range opts {
		opt(&o)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.IGVM != "" {
		return nil, fmt.Errorf("the QEMU backend boots kernel + initramfs (measured by OVMF under SEV-SNP); use --vmm cloud-hypervisor for IGVM")
	}
	var snpArgs []string
	if cfg.SEVSNP {
		// Before anything starts: the host must run SNP guests, under KVM.
		if err := ProbeSNP(o.snpParam); err != nil {
			return nil, err
		}
		if o.accel == AccelTCG {
			return nil, fmt.Errorf("SEV-SNP guests run under KVM only, not %s", o.accel)
		}
		if o.snp == nil {
			return nil, fmt.Errorf("SEV-SNP launch under QEMU: no firmware configured (vmm.WithSEVSNP)")
		}
		l, err := o.snp.withDefaults()
		if err != nil {
			return nil, err
		}
		if snpArgs, err = qemuSNPArgs(cfg, l); err != nil {
			return nil, err
		}
		o.accel = AccelKVM
	}
	qemu, err := lookPath(qemuBinary, o.qemu, "apt-get install qemu-system-x86")
	if err != nil {
		return nil, err
	}
	vhost, err := lookPath(vhostBinary, o.vhost, vhostInstall)
	if err != nil {
		return nil, err
	}
	accel, _ := ResolveAccel(ctx, o.accel, o.kvmDevice)
	if accel == "" {
		return nil, fmt.Errorf("accelerator %q: want auto, kvm or tcg", o.accel)
	}
	vm := &procVM{runDir: cfg.RunDir, done: make(chan struct{}), accel: accel}
	ok := false
	defer func() {
		if !ok {
			vm.kill()
		}
	}()
	for _, name := range []string{vhostSocket, VsockSocket, QMPSocket, ConsoleLog} {
		os.Remove(filepath.Join(cfg.RunDir, name)) // stale files from a crashed launcher
	}
	// Its warnings (none by default) go to its log beside the console log.
	vp, err := startProc(vhost, vhostArgs(cfg), filepath.Join(cfg.RunDir, vhostLog), o.detach, "RUST_LOG=warn", nil)
	if err != nil {
		return nil, fmt.Errorf("start vhost-device-vsock: %w", err)
	}
	vm.procs = append(vm.procs, vp)
	if err := waitForFile(ctx, filepath.Join(cfg.RunDir, vhostSocket), vp, socketWait); err != nil {
		return nil, fmt.Errorf("vhost-device-vsock: %w%s", err, logTail(filepath.Join(cfg.RunDir, vhostLog)))
	}
	vm.vhost = &vhostWatch{pid: vp.cmd.Process.Pid, threadNames: taskNames}
	vm.vhost.stalled() // its worker runs once it listens: remember that it was seen
	args := qemuArgs(cfg, accel)
	if cfg.SEVSNP {
		args = snpArgs
	}
	qp, err := startProc(qemu, args, filepath.Join(cfg.RunDir, qemuLog), o.detach, "", nicFiles(cfg))
	if err != nil {
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	vm.procs = append(vm.procs, qp)
	vm.main = qp
	if err := waitForFile(ctx, filepath.Join(cfg.RunDir, QMPSocket), qp, socketWait); err != nil {
		return nil, fmt.Errorf("qemu: %w%s", err, logTail(filepath.Join(cfg.RunDir, qemuLog)))
	}
	go vm.supervise()
	ok = true
	return vm, nil
}

// proc is one supervised child process.
type proc struct {
	cmd    *exec.Cmd
	name   string
	log    string
	exited chan struct{}
	err    error
}

// nicFiles are the taps of cfg's network devices, in order.
func nicFiles(cfg Config) []*os.File {
	var fs []*os.File
	for _, n := range cfg.NICs {
		fs = append(fs, n.Tap)
	}
	return fs
}

// startProc starts bin with args, its output to logPath, with env (KEY=VALUE, "" for none)
// added to the environment unless the environment sets KEY already, and files as its
// descriptors 3, 4, ...
func startProc(bin string, args []string, logPath string, detach bool, env string, files []*os.File) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", logPath, err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = files
	if k, _, ok := strings.Cut(env, "="); ok && os.Getenv(k) == "" {
		cmd.Env = append(os.Environ(), env)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		// If the launcher dies, the VM dies with it.
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, name: filepath.Base(bin), log: logPath, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// waitForFile waits until path exists, p exits, or the timeout or ctx ends.
// socketWait bounds the wait for a just-started VMM or backend to create its socket. It
// takes milliseconds on an idle host; on a loaded one (critest's pods on a 2-core machine at
// load 20) 5 s was too short and pods failed to boot. The wait ends at once if the process
// exits, so a long bound costs nothing when something is wrong.
const socketWait = 30 * time.Second

func waitForFile(ctx context.Context, path string, p *proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("exited before creating %s (%v)", filepath.Base(path), p.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("did not create %s within %v", filepath.Base(path), timeout)
		}
	}
}

func logTail(path string) string {
	lines := consoleTail(path, 5)
	if len(lines) == 0 {
		return ""
	}
	return "\n  " + strings.Join(lines, "\n  ")
}

// procVM is a VM made of supervised processes; main is the VMM.
type procVM struct {
	runDir   string
	accel    Accel
	procs    []*proc
	main     *proc
	done     chan struct{}
	exitErr  error
	stopOnce once
	powerOff func(ctx context.Context) error
	vhost    *vhostWatch // the vsock backend of a QEMU VM; nil for Cloud Hypervisor
}

// supervise waits until any process exits; then the VM is over and the rest are killed.
func (vm *procVM) supervise() {
	go trimLogsUntil(vm.done, logTrimEvery, vm.runDir)
	cases := make(chan *proc, len(vm.procs))
	for _, p := range vm.procs {
		go func() { <-p.exited; cases <- p }()
	}
	first := <-cases
	if first != vm.main {
		vm.exitErr = fmt.Errorf("%s exited (%v), stopping the VM%s: %w", first.name, first.err, logTail(first.log), ErrNotRunning)
	} else if first.err != nil {
		vm.exitErr = fmt.Errorf("%s: %w%s", first.name, first.err, logTail(first.log))
	}
	vm.kill()
	close(vm.done)
}

func (vm *procVM) kill() {
	for _, p := range vm.procs {
		select {
		case <-p.exited:
		default:
			// Negative pid: the process group, which catches helpers the VMM forked.
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		}
	}
	for _, p := range vm.procs {
		<-p.exited
	}
	for _, name := range []string{vhostSocket, VsockSocket, QMPSocket} {
		os.Remove(filepath.Join(vm.runDir, name))
	}
	// Guest-initiated vsock connections leave <socket>_<port> listeners behind.
	if m, _ := filepath.Glob(filepath.Join(vm.runDir, VsockSocket+"_*")); len(m) > 0 {
		for _, f := range m {
			os.Remove(f)
		}
	}
}

func (vm *procVM) VsockPath() string          { return filepath.Join(vm.runDir, VsockSocket) }
func (vm *procVM) ConsolePath() string        { return filepath.Join(vm.runDir, ConsoleLog) }
func (vm *procVM) ConsoleTail(n int) []string { return consoleTail(vm.ConsolePath(), n) }
func (vm *procVM) Done() <-chan struct{}      { return vm.done }
func (vm *procVM) Accel() Accel               { return vm.accel }
func (vm *procVM) PIDs() []int {
	var pids []int
	for _, p := range vm.procs {
		pids = append(pids, p.cmd.Process.Pid)
	}
	return pids
}

func (vm *procVM) Wait(ctx context.Context) error {
	select {
	case <-vm.done:
		return vm.exitErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (vm *procVM) Stop(ctx context.Context) error {
	return vm.stopOnce.do(func() error {
		select {
		case <-vm.done:
			return nil
		default:
		}
		var perr error
		if vm.powerOff != nil {
			perr = vm.powerOff(ctx)
		} else {
			perr = qmpPowerdown(ctx, filepath.Join(vm.runDir, QMPSocket))
		}
		if perr == nil {
			select {
			case <-vm.done:
				return nil
			case <-ctx.Done():
			}
		}
		vm.kill()
		<-vm.done
		if perr != nil && !errors.Is(perr, ErrNotRunning) {
			return fmt.Errorf("power off: %w (the VM was killed)", perr)
		}
		return nil
	})
}

// CheckQEMU reports early whether StartQEMU can find QEMU and vhost-device-vsock.
func CheckQEMU(opts ...QEMUOption) error {
	var o qemuOptions
	for _, opt := range opts {
		opt(&o)
	}
	if _, err := lookPath(qemuBinary, o.qemu, "apt-get install qemu-system-x86"); err != nil {
		return err
	}
	_, err := lookPath(vhostBinary, o.vhost, vhostInstall)
	return err
}
