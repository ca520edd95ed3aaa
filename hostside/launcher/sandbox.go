// Package launcher boots the confguest guest image under a VMM, connects to its agent, and
// tears everything down again: the part of `confguest run` that a containerd shim can reuse.
// A Sandbox owns one run directory (mode 0700) holding the VMM's sockets, the console log,
// the container disks and a state file; Close leaves nothing of it behind.
package launcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentv1 "confguest/agent/api/v1"
	"confguest/hostside/image"
	"confguest/hostside/vmm"
	"confguest/hostside/vsock"
)

var hostDataRE = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)

// AgentPort is the agent's vsock port (the Kata convention).
const AgentPort = 1024

// VMM backend names for Options.VMM.
const (
	QEMU            = "qemu"
	CloudHypervisor = "cloud-hypervisor"
)

// Options configure a Sandbox.
type Options struct {
	ImageDir  string // the guest image (make image's out/)
	VMM       string // QEMU (default) or CloudHypervisor
	Accel     vmm.Accel
	CPUs      int
	MemoryMiB int
	RunBase   string // default DefaultRunBase()
	Name      string // a name for long-running guests; empty for an ephemeral one
	Detach    bool   // the VM outlives the launcher (confguest start)
	// BootTimeout bounds boot to agent ready (default 120s: TCG is slow).
	BootTimeout time.Duration
	QEMU        []vmm.QEMUOption
	CH          []vmm.CHOption
	// SEVSNP boots an SEV-SNP guest: under QEMU, bzImage + initramfs + cmdline measured by
	// OVMF (kernel hashes); under Cloud Hypervisor, guest.igvm. HostData (64 hex digits) is
	// copied into every attestation report; by default it is HostDataFor(Policy).
	SEVSNP   bool
	HostData string
	// Policy is the agent policy document: InstallPolicy sends it after Boot, and its
	// SHA-256 is HOST_DATA (nil: the empty policy's, until UsePolicy gives the document).
	Policy []byte
	// OVMF is the firmware of QEMU SEV-SNP launches (default: the pinned ovmf-amdsev that
	// build/debpin.sh unpacked into the cache).
	OVMF string
	// SNPParam is the kvm_amd parameter probed for SEV-SNP (default vmm.SNPParam).
	SNPParam string
	Progress io.Writer // progress lines; nil for none
	Timings  *Timings
	// CacheDir remembers host facts (a KVM that hangs guests); default
	// ${CONFGUEST_CACHE:-$HOME/.cache/confguest}.
	CacheDir string
}

// Sandbox is one guest VM and the connection to its agent.
type Sandbox struct {
	Dir   string
	Name  string
	Guest image.GuestImage
	VM    vmm.VM
	Agent agentv1.AgentClient
	// SNP is the expected SEV-SNP launch (measurement, HOST_DATA), nil without SEV-SNP.
	SNP *SNPLaunch

	opts Options
	// hostDataGiven: Options.HostData was given, not derived from the policy.
	hostDataGiven bool
	client        *ttrpc.Client
	disks         []image.Disk    // disk i has serial ctr<i>
	attached      map[string]bool // serials the running VM has
	state         State
}

// CheckVMM validates a --vmm value.
func CheckVMM(name string) error {
	switch name {
	case "", QEMU, CloudHypervisor:
		return nil
	}
	return fmt.Errorf("--vmm %q: %w: want %s or %s", name, ErrUnknownVMM, QEMU, CloudHypervisor)
}

// New checks the guest image and creates the run directory. Container disks are built
// into it with BuildDisk before Boot.
func New(ctx context.Context, o Options) (*Sandbox, error) {
	if err := CheckVMM(o.VMM); err != nil {
		return nil, err
	}
	if o.VMM == "" {
		o.VMM = QEMU
	}
	if o.HostData != "" && !hostDataRE.MatchString(o.HostData) {
		return nil, fmt.Errorf("host data %q: want 64 hex digits (a SHA-256)", o.HostData)
	}
	if o.MemoryMiB != 0 && o.MemoryMiB < vmm.MinMemoryMiB {
		return nil, fmt.Errorf("--memory %dM is too small: the guest needs at least %dM", o.MemoryMiB, vmm.MinMemoryMiB)
	}
	var hostDataFrom string
	if o.SEVSNP {
		// Before anything is checked, built or started.
		var err error
		if hostDataFrom, err = prepareSNP(&o); err != nil {
			return nil, err
		}
	}
	if o.RunBase == "" {
		o.RunBase = DefaultRunBase()
	}
	if o.BootTimeout == 0 {
		o.BootTimeout = 120 * time.Second
	}
	name := o.Name
	if name == "" {
		name = fmt.Sprintf("run-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	} else if err := CheckName(name); err != nil {
		return nil, err
	}
	s := &Sandbox{Name: name, opts: o, hostDataGiven: hostDataFrom == hostDataFlag}
	s.progress("checking guest image %s", o.ImageDir)
	done := o.Timings.Start(PhaseImageCheck)
	g, err := image.CheckGuest(ctx, o.ImageDir)
	done()
	if err != nil {
		return nil, fmt.Errorf("guest image refused before boot: %w", err)
	}
	s.Guest = g
	if o.SEVSNP {
		if s.SNP, err = s.expectSNP(hostDataFrom); err != nil {
			return nil, err
		}
		s.printSNP()
	}
	if o.VMM == CloudHypervisor {
		err = vmm.CheckCloudHypervisor(o.CH...)
	} else {
		if v := s.findVhost(); v != "" {
			s.opts.QEMU = append([]vmm.QEMUOption{vmm.WithVhostDeviceVsock(v)}, s.opts.QEMU...)
		}
		err = vmm.CheckQEMU(s.opts.QEMU...)
	}
	if err != nil {
		return nil, err
	}
	dir, err := createRunDir(o.RunBase, name)
	if err != nil {
		return nil, err
	}
	s.Dir = dir
	return s, nil
}

func (s *Sandbox) progress(format string, args ...any) {
	if s.opts.Progress != nil {
		fmt.Fprintf(s.opts.Progress, "confguest: "+format+"\n", args...)
	}
}

// BuildDisk turns a container rootfs source into a verity disk in the run directory with
// serial ctr<N>; disks built before Boot are attached at Boot, later ones by AttachDisk.
// Rootfs images are reproducible, so a source whose image is identical to one built before
// (the same dm-verity parameters, root hash included) gets that disk's path and serial
// back and the new copy is removed: containers of one image share one disk (the agent
// shares the open image between them), and a container that is created again and again,
// as a crash-looping pod container is, takes no new disk each time.
func (s *Sandbox) BuildDisk(ctx context.Context, src image.Source, opts ...image.Option) (image.Disk, string, error) {
	serial := serialOf(len(s.disks))
	s.progress("building container disk from %s", src)
	done := s.opts.Timings.Start(PhaseDiskBuild)
	d, err := image.BuildDisk(ctx, src, s.Dir, filepath.Join(s.Dir, serial+".img"), opts...)
	done()
	if err != nil {
		return image.Disk{}, "", err
	}
	for i, old := range s.disks {
		if old.Verity == d.Verity {
			if err := os.Remove(d.Path); err != nil {
				return image.Disk{}, "", fmt.Errorf("remove the duplicate disk: %w", err)
			}
			d.Path = old.Path // the image config (d.Config) stays the new source's
			s.progress("the disk is identical to %s (root hash %s); using that", serialOf(i), d.Verity.RootHash)
			return d, serialOf(i), nil
		}
	}
	s.disks = append(s.disks, d)
	return d, serial, nil
}

func serialOf(i int) string { return "ctr" + strconv.Itoa(i) }

// AttachDisk hot-adds the disk BuildDisk returned as serial to the running VM, unless it is
// attached already (at Boot, or by an earlier AttachDisk of an identical image).
func (s *Sandbox) AttachDisk(ctx context.Context, serial string) error {
	i := -1
	for j := range s.disks {
		if serialOf(j) == serial {
			i = j
		}
	}
	if i < 0 {
		return fmt.Errorf("attach disk %q: no such disk in this sandbox (BuildDisk names them)", serial)
	}
	if s.attached[serial] {
		return nil
	}
	if s.VM == nil {
		return fmt.Errorf("attach disk %s: the VM is not running", serial)
	}
	if err := vmm.AddDisk(ctx, s.VM, vmm.Disk{Path: s.disks[i].Path, Serial: serial, ReadOnly: true}); err != nil {
		return fmt.Errorf("hot-add disk %s: %w", serial, err)
	}
	if s.attached == nil {
		s.attached = map[string]bool{}
	}
	s.attached[serial] = true
	return nil
}

// Boot starts the VMM with the guest image and the built disks and waits until the agent
// answers. On failure everything started is stopped again (the run directory stays until
// Close).
func (s *Sandbox) Boot(ctx context.Context) error {
	cmdline, err := s.Guest.Cmdline()
	if err != nil {
		return err
	}
	if !s.opts.SEVSNP {
		// No SEV-SNP: the guest must know, through its command line.
		cmdline += " confguest.tee=none"
	}
	cfg := vmm.Config{
		Kernel:    s.Guest.Path("bzImage"),
		Initramfs: s.Guest.Path("initramfs.cpio.gz"),
		Cmdline:   cmdline,
		CPUs:      s.opts.CPUs,
		MemoryMiB: s.opts.MemoryMiB,
		RunDir:    s.Dir,
		Disks:     []vmm.Disk{{Path: s.Guest.Path("rootfs.img"), Serial: "rootfs", ReadOnly: true}},
	}
	if s.opts.SEVSNP {
		cfg.HostData, cfg.SEVSNP = s.opts.HostData, true
	}
	if s.opts.SEVSNP && s.opts.VMM == CloudHypervisor {
		// Kernel, initramfs and command line are measured inside the IGVM file.
		cfg.Kernel, cfg.Initramfs, cfg.Cmdline = "", "", ""
		cfg.IGVM = s.Guest.Path("guest.igvm")
		if !s.Guest.Lists("guest.igvm") {
			return fmt.Errorf("%s: guest.igvm is not in manifest.json: rebuild with make image", s.Guest.Dir)
		}
	}
	attached := map[string]bool{}
	for i, d := range s.disks {
		cfg.Disks = append(cfg.Disks, vmm.Disk{Path: d.Path, Serial: serialOf(i), ReadOnly: true})
		attached[serialOf(i)] = true
	}
	var accel vmm.Accel // Cloud Hypervisor picks its own (KVM or MSHV)
	switch {
	case s.opts.VMM == QEMU && s.opts.SEVSNP:
		accel = vmm.AccelKVM // SEV-SNP runs under KVM or not at all
	case s.opts.VMM == QEMU:
		accel = s.pickAccel(ctx)
	}
	rebooted := false
	for {
		err := s.bootOnce(ctx, cfg, accel)
		if err == nil {
			s.attached = attached
		}
		if errors.Is(err, errKVMStalled) {
			s.rememberKVMHangs()
			s.progress("the guest made no progress under KVM; booting again with TCG")
			accel = vmm.AccelTCG
			continue
		}
		if errors.Is(err, errVsockWedged) && !rebooted {
			rebooted = true
			s.progress("the agent said it listens but no CONNECT was answered for %v; booting again", vsockAnswerTimeout)
			continue
		}
		return err
	}
}

// errVsockWedged means the guest printed the agent's ready line but the hybrid vsock
// backend answered no CONNECT for vsockAnswerTimeout. Boot boots once more then.
var errVsockWedged = errors.New("the agent is ready but the vsock backend answers no CONNECT")

// vsockAnswerTimeout bounds the wait for an answer to CONNECT once the agent listens
// (a variable for tests).
var vsockAnswerTimeout = 45 * time.Second

var errKVMStalled = errors.New("guest stalled under KVM")

// kvmGrace is how long a KVM guest may stay silent on its console before TCG is used.
const kvmGrace = 5 * time.Second

func (s *Sandbox) bootOnce(ctx context.Context, cfg vmm.Config, accel vmm.Accel) error {
	s.progress("starting %s%s with %s", s.opts.VMM, map[bool]string{true: " (" + string(accel) + ")", false: ""}[accel != ""], s.Guest.Dir)
	done := s.opts.Timings.Start(PhaseVMMStart)
	var vm vmm.VM
	var err error
	switch s.opts.VMM {
	case CloudHypervisor:
		opts := s.opts.CH
		if s.opts.SEVSNP {
			opts = append(opts, vmm.WithCHSNPProbe(s.opts.SNPParam))
		}
		if s.opts.Detach {
			opts = append(opts, vmm.WithCHDetach())
		}
		vm, err = vmm.StartCloudHypervisor(ctx, cfg, opts...)
	default:
		opts := append([]vmm.QEMUOption{vmm.WithAccel(accel)}, s.opts.QEMU...)
		if s.opts.SEVSNP {
			opts = append(opts, vmm.WithSNPProbe(s.opts.SNPParam),
				vmm.WithSEVSNP(vmm.SNPLaunch{OVMF: s.SNP.OVMF, CPUModel: s.SNP.VCPUType}))
		}
		if s.opts.Detach {
			opts = append(opts, vmm.WithDetach())
		}
		vm, err = vmm.StartQEMU(ctx, cfg, opts...)
	}
	done()
	if err != nil {
		return err
	}
	s.VM = vm
	pids := vm.PIDs()
	s.state = State{Name: s.Name, VMM: s.opts.VMM, PIDs: pids, VMMPID: pids[len(pids)-1], Launcher: os.Getpid(),
		Created: time.Now().UTC(), Vsock: vm.VsockPath(), Console: vm.ConsolePath()}
	if err := writeState(s.Dir, s.state); err != nil {
		return s.abortBoot(err)
	}

	s.progress("booting; waiting for the agent (console: %s)", vm.ConsolePath())
	done = s.opts.Timings.Start(PhaseBootToAgent)
	defer done()
	bctx, cancel := context.WithTimeoutCause(ctx, s.opts.BootTimeout,
		fmt.Errorf("the agent did not answer within %v", s.opts.BootTimeout))
	defer cancel()
	bctx, cancelVM := context.WithCancelCause(bctx)
	defer cancelVM(nil)
	go func() {
		var grace <-chan time.Time
		if accel == vmm.AccelKVM && !s.opts.SEVSNP {
			// (OVMF boots silently, and an SNP guest must not fall back to TCG.)
			grace = time.After(kvmGrace)
		}
		select {
		case <-vm.Done():
			cancelVM(fmt.Errorf("%w during boot: %v", ErrVMMDied, vm.Wait(context.Background())))
		case <-grace:
			if len(vm.ConsoleTail(1)) == 0 {
				cancelVM(errKVMStalled)
			}
		case <-bctx.Done():
		}
	}()
	// Dial once the agent says it listens (if bctx ends first, Dial reports why).
	dctx := bctx
	if waitForConsole(bctx, vm.ConsolePath(), agentReadyMarker) {
		var cancelDial context.CancelFunc
		dctx, cancelDial = context.WithTimeoutCause(bctx, vsockAnswerTimeout, errVsockWedged)
		defer cancelDial()
	}
	conn, err := vsock.Dial(dctx, vm.VsockPath(), AgentPort, vsock.WithConsole(func() []string { return vm.ConsoleTail(15) }))
	if err != nil && bctx.Err() == nil && errors.Is(context.Cause(dctx), errVsockWedged) {
		return s.abortBoot(fmt.Errorf("%w: %w", errVsockWedged, err))
	}
	if err != nil {
		if errors.Is(context.Cause(bctx), errKVMStalled) {
			s.abortBoot(nil)
			return errKVMStalled
		}
		if cause := context.Cause(bctx); errors.Is(cause, ErrVMMDied) {
			err = fmt.Errorf("%w\n%s", cause, strings.Join(indent(vm.ConsoleTail(15)), "\n"))
		}
		return s.abortBoot(fmt.Errorf("connect to the agent: %w", err))
	}
	s.client = ttrpc.NewClient(conn)
	s.Agent = agentv1.NewAgentClient(s.client)
	vctx, vcancel := context.WithTimeout(bctx, 30*time.Second)
	defer vcancel()
	v, err := s.Agent.Version(vctx, &agentv1.VersionRequest{})
	switch {
	case status.Code(err) == codes.Unimplemented:
		// The agent accepted the connection, so it is up; it just cannot say which it is.
		s.progress("agent ready (it does not report its version)")
	case err != nil:
		return s.abortBoot(fmt.Errorf("agent Version: %w", err))
	default:
		s.progress("agent %s ready (tee %s)", v.GetAgentVersion(), v.GetTee())
	}
	return nil
}

func indent(lines []string) []string {
	out := make([]string, 0, len(lines)+1)
	out = append(out, "last lines of the guest console:")
	for _, l := range lines {
		out = append(out, "  "+l)
	}
	return out
}

func (s *Sandbox) abortBoot(err error) error {
	if s.client != nil {
		s.client.Close()
		s.client = nil
	}
	if s.VM != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.VM.Stop(ctx) // no guest to power off gracefully yet
		s.VM = nil
	}
	return err
}

// Close shuts the guest down (agent Shutdown, then the VMM's power-off, then kill) and
// removes the run directory. It is safe to call after a failed Boot.
func (s *Sandbox) Close(ctx context.Context) error {
	done := s.opts.Timings.Start(PhaseTeardown)
	defer done()
	var errs []error
	if s.client != nil && s.VM != nil {
		sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := s.Agent.Shutdown(sctx, &agentv1.ShutdownRequest{})
		cancel()
		if err == nil {
			// The guest powers itself off; give it a moment before forcing.
			select {
			case <-s.VM.Done():
			case <-time.After(5 * time.Second):
			case <-ctx.Done():
			}
		}
	}
	if s.client != nil {
		s.client.Close()
	}
	if s.VM != nil {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := s.VM.Stop(sctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	if s.Dir != "" {
		if err := os.RemoveAll(s.Dir); err != nil {
			errs = append(errs, fmt.Errorf("remove run directory: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Detach releases the launcher's hold on a detached guest: the agent connection is closed,
// the VM keeps running and its run directory stays for Attach.
func (s *Sandbox) Detach() {
	if s.client != nil {
		s.client.Close()
		s.client = nil
	}
}

// SetContainer records the container of a long-running guest in its state file.
func (s *Sandbox) SetContainer(id string, cmd []string) error {
	s.state.ContainerID, s.state.Command = id, cmd
	return writeState(s.Dir, s.state)
}

// Attach connects to the agent of the running guest name under base.
func Attach(ctx context.Context, base, name string) (*Sandbox, State, error) {
	if base == "" {
		base = DefaultRunBase()
	}
	if err := CheckName(name); err != nil {
		return nil, State{}, err
	}
	dir := filepath.Join(base, name)
	st, err := ReadState(dir)
	if err != nil {
		return nil, st, fmt.Errorf("guest %q: %w (see confguest ps)", name, ErrNoGuest)
	}
	if !st.alive() {
		cleanStale(dir)
		return nil, st, fmt.Errorf("guest %q is no longer running (its VMM exited; state cleaned up): %w", name, ErrNoGuest)
	}
	if _, err := os.Stat(st.Vsock); err != nil {
		return nil, st, fmt.Errorf("guest %q: its vsock socket is gone: %w", name, err)
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := vsock.Dial(dctx, st.Vsock, AgentPort)
	if err != nil {
		return nil, st, fmt.Errorf("guest %q: %w", name, err)
	}
	c := ttrpc.NewClient(conn)
	return &Sandbox{Dir: dir, Name: name, Agent: agentv1.NewAgentClient(c), client: c, state: st}, st, nil
}

// Release closes the agent connection of an attached guest.
func (s *Sandbox) Release() {
	if s.client != nil {
		s.client.Close()
	}
}

// VMMDied returns an ErrVMMDied error quoting the guest console if the VMM exits within
// wait, else nil. Use it to explain a broken agent connection.
func (s *Sandbox) VMMDied(wait time.Duration) error {
	if s.VM == nil {
		return nil
	}
	select {
	case <-s.VM.Done():
	case <-time.After(wait):
		return nil
	}
	msg := "the guest powered off"
	if werr := s.VM.Wait(context.Background()); werr != nil {
		msg = werr.Error()
	}
	return fmt.Errorf("%w: %s\n%s", ErrVMMDied, msg, strings.Join(indent(s.VM.ConsoleTail(10)), "\n"))
}

// WatchVM returns a context that is cancelled, with an ErrVMMDied cause quoting the guest
// console, if the VMM exits while the caller still needs it.
func (s *Sandbox) WatchVM(ctx context.Context) (context.Context, context.CancelFunc) {
	wctx, cancel := context.WithCancelCause(ctx)
	if s.VM == nil {
		return wctx, func() { cancel(nil) }
	}
	go func() {
		select {
		case <-s.VM.Done():
			cancel(s.VMMDied(0))
		case <-wctx.Done():
		}
	}()
	return wctx, func() { cancel(nil) }
}
