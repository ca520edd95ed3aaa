// Package launcher boots the confguest guest image under a VMM and drives its agent: the one
// way the host side (the CLI and the containerd shim) runs a guest. A Sandbox is a guest
// before boot: it owns one run directory (mode 0700) holding the VMM's sockets, the console
// log, the container disks and a state file, and Close leaves nothing of it behind. Its Boot
// takes the guest's policy, installs it (checking the agent's hash and binding) and returns
// the Guest whose methods are the operations on the running guest.
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
	// NICs are the guest's network devices (a pod's tap, hostside/podnet); the caller
	// keeps the taps open until the sandbox is closed. Guest.ConfigureNetwork then has
	// the agent configure each.
	NICs []vmm.NIC
	// SEVSNP boots an SEV-SNP guest: under QEMU, bzImage + initramfs + cmdline measured by
	// OVMF (kernel hashes); under Cloud Hypervisor, guest.igvm. HostData (64 hex digits) is
	// copied into every attestation report; by default it is HostDataFor the policy Boot is
	// given, and a HostData that differs from it is an error.
	SEVSNP   bool
	HostData string
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
	// DiskCacheBytes bounds the cache of container disks in CacheDir/disks (0: the
	// default, image.DefaultCacheBytes; negative: no cache, every disk is built).
	DiskCacheBytes int64
}

// Sandbox is one guest VM: its run directory, its container disks and, once booted, its
// VMM and the connection to its agent.
type Sandbox struct {
	dir   string
	name  string
	image image.GuestImage
	vm    vmm.VM
	agent agentv1.AgentClient
	// snp is the expected SEV-SNP launch (measurement, HOST_DATA), nil without SEV-SNP.
	snp *SNPLaunch

	opts Options
	// hostDataGiven: Options.HostData was given, not derived from the policy.
	hostDataGiven bool
	client        *ttrpc.Client
	disks         []image.Disk         // disk i has serial ctr<i>
	attached      map[string]time.Time // serials the running VM has, and when they were hot-added
	state         State
	diskCache     *image.Cache // opened by the first BuildDisk; nil without one
}

// Disk is a container rootfs disk of a sandbox: the verity image and the serial the guest
// finds it by.
type Disk struct {
	image.Disk
	Serial string
	// Attestation is the DSSE envelope that vouches for the disk (confguest/agent/api/imagesig),
	// sent with CreateContainer for a policy entry that pins the rootfs by signer; nil: none.
	Attestation []byte
}

// Dir is the sandbox's run directory.
func (s *Sandbox) Dir() string { return s.dir }

// Name is the guest's name (the run directory's).
func (s *Sandbox) Name() string { return s.name }

// SNP is the expected SEV-SNP launch (measurement, HOST_DATA), nil without SEV-SNP.
func (s *Sandbox) SNP() *SNPLaunch { return s.snp }

// CheckVMM validates a --vmm value.
func CheckVMM(name string) error {
	switch name {
	case "", QEMU, CloudHypervisor:
		return nil
	}
	return fmt.Errorf("--vmm %q: %w: want %s or %s", name, ErrUnknownVMM, QEMU, CloudHypervisor)
}

// New checks the guest image and creates the run directory. Container disks are built
// into it with BuildDisk before Boot (after Boot, Guest.AddDisk builds and hot-adds one).
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
		if err := prepareSNP(&o); err != nil {
			return nil, err
		}
		o.HostData, hostDataFrom, _ = snpHostData(o.HostData, nil)
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
	s := &Sandbox{name: name, opts: o, hostDataGiven: o.SEVSNP && hostDataFrom == hostDataFlag}
	s.progress("checking guest image %s", o.ImageDir)
	done := o.Timings.Start(PhaseImageCheck)
	g, err := image.CheckGuest(ctx, o.ImageDir)
	done()
	if err != nil {
		return nil, fmt.Errorf("guest image refused before boot: %w", err)
	}
	s.image = g
	if o.SEVSNP {
		if s.snp, err = s.expectSNP(hostDataFrom); err != nil {
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
	s.dir = dir
	return s, nil
}

func (s *Sandbox) progress(format string, args ...any) {
	if s.opts.Progress != nil {
		fmt.Fprintf(s.opts.Progress, "confguest: "+format+"\n", args...)
	}
}

// BuildDisk turns a container rootfs source into a verity disk in the run directory with
// serial ctr<N>, attached at Boot.
// The disk comes from the disk cache when it has the source's content (openDiskCache).
// Rootfs images are reproducible, so a source whose image is identical to one built before
// (the same dm-verity parameters, root hash included) gets that disk's path and serial
// back and the new copy is removed: containers of one image share one disk (the agent
// shares the open image between them), and a container that is created again and again,
// as a crash-looping pod container is, takes no new disk each time.
func (s *Sandbox) BuildDisk(ctx context.Context, src image.Source, opts ...image.Option) (Disk, error) {
	serial := serialOf(len(s.disks))
	s.progress("building container disk from %s", src)
	done := s.opts.Timings.Start(PhaseDiskBuild)
	opts = append([]image.Option{image.WithNote(func(line string) { s.progress("%s", line) })}, opts...)
	if c := s.openDiskCache(); c != nil {
		opts = append([]image.Option{image.WithCache(c)}, opts...)
	}
	d, err := image.BuildDisk(ctx, src, s.dir, filepath.Join(s.dir, serial+".img"), opts...)
	done()
	if err != nil {
		return Disk{}, err
	}
	for i, old := range s.disks {
		if old.Verity == d.Verity {
			if err := os.Remove(d.Path); err != nil {
				return Disk{}, fmt.Errorf("remove the duplicate disk: %w", err)
			}
			d.Path = old.Path // the image config (d.Config) stays the new source's
			s.progress("the disk is identical to %s (root hash %s); using that", serialOf(i), d.Verity.RootHash)
			return Disk{Disk: d, Serial: serialOf(i)}, nil
		}
	}
	s.disks = append(s.disks, d)
	return Disk{Disk: d, Serial: serial}, nil
}

// openDiskCache opens the cache of container disks, CacheDir/disks: an image's disk is
// built once and hard-linked into each run directory that uses it (copied where the run
// directory is on another filesystem). Without a usable cache every disk is built.
func (s *Sandbox) openDiskCache() *image.Cache {
	if s.diskCache != nil || s.opts.DiskCacheBytes < 0 || s.cacheDir() == "" {
		return s.diskCache
	}
	c, err := image.OpenCache(filepath.Join(s.cacheDir(), "disks"), s.opts.DiskCacheBytes)
	if err != nil {
		s.progress("no disk cache, building every disk: %v", err)
		s.opts.DiskCacheBytes = -1
		return nil
	}
	s.diskCache = c
	return c
}

func serialOf(i int) string { return "ctr" + strconv.Itoa(i) }

// attachDisk hot-adds the disk BuildDisk returned as serial to the running VM, unless it is
// attached already (at Boot, or by an earlier attachDisk of an identical image).
func (s *Sandbox) attachDisk(ctx context.Context, serial string) error {
	i := -1
	for j := range s.disks {
		if serialOf(j) == serial {
			i = j
		}
	}
	if i < 0 {
		return fmt.Errorf("attach disk %q: no such disk in this sandbox (BuildDisk names them)", serial)
	}
	if _, ok := s.attached[serial]; ok {
		return nil
	}
	if s.vm == nil {
		return fmt.Errorf("attach disk %s: the VM is not running", serial)
	}
	if err := vmm.AddDisk(ctx, s.vm, vmm.Disk{Path: s.disks[i].Path, Serial: serial, ReadOnly: true}); err != nil {
		return fmt.Errorf("hot-add disk %s: %w", serial, err)
	}
	if s.attached == nil {
		s.attached = map[string]time.Time{}
	}
	s.attached[serial] = time.Now()
	return nil
}

// Boot starts the VMM with the guest image and the built disks, waits until the agent
// answers and installs policy, the guest's policy document, as the first call: it checks
// that the agent hashed the same bytes and, under SEV-SNP, bound them to HOST_DATA, which
// is SHA-256(policy). It returns the running guest. A nil policy boots a guest without
// one, whose agent answers only Version, GetReport and SetPolicy until Guest.SetPolicy
// installs one. On failure everything started is stopped again (the run directory stays
// until Close).
func (s *Sandbox) Boot(ctx context.Context, policy []byte) (*Guest, error) {
	if s.vm != nil {
		return nil, fmt.Errorf("boot %s: the guest is already booted", s.name)
	}
	if err := s.settlePolicy(policy); err != nil {
		return nil, err
	}
	if err := s.boot(ctx); err != nil {
		return nil, err
	}
	g := &Guest{s: s, agent: s.agent, vm: s.vm}
	if policy != nil {
		if err := g.installPolicy(ctx, policy, true); err != nil {
			return nil, s.abortBoot(err)
		}
	}
	return g, nil
}

func (s *Sandbox) boot(ctx context.Context) error {
	cmdline, err := s.image.Cmdline()
	if err != nil {
		return err
	}
	if !s.opts.SEVSNP {
		// No SEV-SNP: the guest must know, through its command line.
		cmdline += " confguest.tee=none"
	}
	cfg := vmm.Config{
		Kernel:    s.image.Path("bzImage"),
		Initramfs: s.image.Path("initramfs.cpio.gz"),
		Cmdline:   cmdline,
		CPUs:      s.opts.CPUs,
		MemoryMiB: s.opts.MemoryMiB,
		RunDir:    s.dir,
		Disks:     []vmm.Disk{{Path: s.image.Path("rootfs.img"), Serial: "rootfs", ReadOnly: true}},
		NICs:      s.opts.NICs,
	}
	if s.opts.SEVSNP {
		cfg.HostData, cfg.SEVSNP = s.opts.HostData, true
	}
	if s.opts.SEVSNP && s.opts.VMM == CloudHypervisor {
		// Kernel, initramfs and command line are measured inside the IGVM file.
		cfg.Kernel, cfg.Initramfs, cfg.Cmdline = "", "", ""
		cfg.IGVM = s.image.Path("guest.igvm")
		if !s.image.Lists("guest.igvm") {
			return fmt.Errorf("%s: guest.igvm is not in manifest.json: rebuild with make image", s.image.Dir)
		}
	}
	attached := map[string]time.Time{}
	for i, d := range s.disks {
		cfg.Disks = append(cfg.Disks, vmm.Disk{Path: d.Path, Serial: serialOf(i), ReadOnly: true})
		attached[serialOf(i)] = time.Time{} // present from the start
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
			s.progress("the agent said it listens but no CONNECT was answered: %v; booting again", err)
			continue
		}
		return err
	}
}

// errVsockWedged means the guest printed the agent's ready line but the hybrid vsock
// backend answered no CONNECT for vsockAnswerTimeout, or stopped serving the guest's vsock
// device (vmm.VsockStalled). Boot boots once more then. The cause is in the backend:
// vhost-device-vsock 0.3.0's worker thread ends on the first error of its event handler,
// silently, after which its socket takes CONNECTs and answers none; CONNECTs sent while
// the guest's vsock driver sets up its queues end it (see hostside/vmm/vhosthealth.go).
var errVsockWedged = errors.New("the agent is ready but the vsock backend answers no CONNECT")

// vsockStallPoll is how often a boot checks, while CONNECTs go unanswered, whether the
// vsock backend stopped serving the guest.
const vsockStallPoll = 250 * time.Millisecond

// watchVsock returns ctx, cancelled with an errVsockWedged cause as soon as vm's vsock
// backend is seen to have stopped serving the guest: then no CONNECT can be answered, and
// waiting out vsockAnswerTimeout would only delay booting again.
func watchVsock(ctx context.Context, vm vmm.VM) context.Context {
	wctx, cancel := context.WithCancelCause(ctx)
	go func() {
		t := time.NewTicker(vsockStallPoll)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
				if err := vmm.VsockStalled(vm); err != nil {
					cancel(fmt.Errorf("%w: %w", errVsockWedged, err))
					return
				}
			}
		}
	}()
	return wctx
}

// vsockAnswerTimeout bounds the wait for an answer to CONNECT once the agent listens
// (a variable for tests).
var vsockAnswerTimeout = 45 * time.Second

var errKVMStalled = errors.New("guest stalled under KVM")

// kvmGrace is how long a KVM guest may stay silent on its console before TCG is used.
const kvmGrace = 5 * time.Second

func (s *Sandbox) bootOnce(ctx context.Context, cfg vmm.Config, accel vmm.Accel) error {
	s.progress("starting %s%s with %s", s.opts.VMM, map[bool]string{true: " (" + string(accel) + ")", false: ""}[accel != ""], s.image.Dir)
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
				vmm.WithSEVSNP(vmm.SNPLaunch{OVMF: s.snp.OVMF, CPUModel: s.snp.VCPUType}))
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
	s.vm = vm
	pids := vm.PIDs()
	s.state = State{Name: s.name, VMM: s.opts.VMM, PIDs: pids, VMMPID: pids[len(pids)-1], Launcher: os.Getpid(),
		Created: time.Now().UTC(), Vsock: vm.VsockPath(), Console: vm.ConsolePath()}
	if err := writeState(s.dir, s.state); err != nil {
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
	doneLine := s.opts.Timings.Start(PhaseBootReadyLine)
	ready := waitForConsole(bctx, vm.ConsolePath(), agentReadyMarker)
	doneLine()
	doneConnect := s.opts.Timings.Start(PhaseBootConnect)
	defer doneConnect()
	if ready {
		var cancelDial context.CancelFunc
		dctx, cancelDial = context.WithTimeoutCause(bctx, vsockAnswerTimeout, errVsockWedged)
		defer cancelDial()
		dctx = watchVsock(dctx, vm)
	}
	conn, err := vsock.Dial(dctx, vm.VsockPath(), AgentPort, vsock.WithConsole(func() []string { return vm.ConsoleTail(15) }))
	if err != nil && bctx.Err() == nil && errors.Is(context.Cause(dctx), errVsockWedged) {
		return s.abortBoot(fmt.Errorf("%w: %w", context.Cause(dctx), err))
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
	s.client = newAgentConn(conn)
	s.agent = agentv1.NewAgentClient(s.client)
	vctx, vcancel := context.WithTimeout(bctx, 30*time.Second)
	defer vcancel()
	v, err := s.agent.Version(vctx, &agentv1.VersionRequest{})
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
	s.agent = nil
	if s.vm != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.vm.Stop(ctx) // no guest to power off gracefully yet
		s.vm = nil
	}
	return err
}

// Close shuts the guest down (agent Shutdown, then the VMM's power-off, then kill) and
// removes the run directory. It is safe to call after a failed Boot, and more than once.
func (s *Sandbox) Close(ctx context.Context) error {
	done := s.opts.Timings.Start(PhaseTeardown)
	defer done()
	var errs []error
	if s.client != nil && s.vm != nil {
		sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := s.agent.Shutdown(sctx, &agentv1.ShutdownRequest{})
		cancel()
		if err == nil {
			// The guest powers itself off; give it a moment before forcing.
			select {
			case <-s.vm.Done():
			case <-time.After(5 * time.Second):
			case <-ctx.Done():
			}
		}
	}
	if s.client != nil {
		s.client.Close()
		s.client, s.agent = nil, nil
	}
	if s.vm != nil {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := s.vm.Stop(sctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
		s.vm = nil
	}
	if s.dir != "" {
		if err := os.RemoveAll(s.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove run directory: %w", err))
		}
		s.dir = ""
	}
	return errors.Join(errs...)
}
