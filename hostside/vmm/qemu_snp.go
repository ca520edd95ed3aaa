package vmm

import (
	"fmt"
	"strconv"
)

// SEV-SNP launches under QEMU: OVMF (the AmdSev build, loaded with -bios) measures the
// kernel, initramfs and command line through QEMU's hashes table (kernel-hashes=on), and
// the sev-snp-guest object carries the guest policy and the host data.

// Defaults of an SEV-SNP launch under QEMU.
const (
	// DefaultSNPCPUModel is the vCPU model the published measurement assumes (its CPUID
	// signature goes into every VMSA): QEMU's EPYC-v4, which Milan, Genoa and Turin run.
	DefaultSNPCPUModel = "EPYC-v4"
	// DefaultSNPPolicy is the SNP guest policy: ABI 0.0, SMT allowed, bit 17 (must be
	// one), no debugging, no migration agent.
	DefaultSNPPolicy uint64 = 0x30000
)

// SNPLaunch configures an SEV-SNP launch under QEMU (see WithSEVSNP).
type SNPLaunch struct {
	// OVMF is the firmware image: the AmdSev build (Debian ovmf-amdsev's
	// usr/share/ovmf/OVMF.amdsev.fd), whose digest the launch measurement covers.
	OVMF string
	// CPUModel is QEMU's -cpu model (DefaultSNPCPUModel when "").
	CPUModel string
	// Policy is the SNP guest policy (DefaultSNPPolicy when 0).
	Policy uint64
	// CBitPos and ReducedPhysBits must match the host; 0 means: read them from the host's
	// CPUID leaf 0x8000001F.
	CBitPos, ReducedPhysBits int
}

// WithSEVSNP makes StartQEMU launch a Config with SEVSNP set as an SEV-SNP guest.
func WithSEVSNP(l SNPLaunch) QEMUOption { return func(o *qemuOptions) { o.snp = &l } }

// WithSNPProbe sets the kvm_amd parameter StartQEMU reads to see whether the host runs
// SEV-SNP guests (default SNPParam).
func WithSNPProbe(param string) QEMUOption { return func(o *qemuOptions) { o.snpParam = param } }

// withDefaults fills the defaults, reading the C-bit position from the host's CPUID.
func (l SNPLaunch) withDefaults() (SNPLaunch, error) {
	if l.CPUModel == "" {
		l.CPUModel = DefaultSNPCPUModel
	}
	if l.Policy == 0 {
		l.Policy = DefaultSNPPolicy
	}
	if l.CBitPos == 0 || l.ReducedPhysBits == 0 {
		pos, reduced, ok := hostCBit()
		if !ok {
			return l, fmt.Errorf("SEV-SNP launch: the host CPU does not report its memory encryption C-bit (CPUID 0x8000001F): %w", ErrNoSNP)
		}
		if l.CBitPos == 0 {
			l.CBitPos = pos
		}
		if l.ReducedPhysBits == 0 {
			l.ReducedPhysBits = reduced
		}
	}
	return l, nil
}

// qemuSNPArgs is QEMU's command line for an SEV-SNP launch of cfg (without the binary):
// KVM only, q35 with the sev-snp-guest object as confidential-guest support, guest memory
// from a shared memfd (vhost-user maps it; the private memory comes from KVM's
// guest_memfd), OVMF as -bios, and every virtio device restricted to the DMA API
// (iommu_platform=on) so the guest bounces its I/O through shared pages; PCIe root ports
// for disks hot-added later (HotplugPortArgs).
func qemuSNPArgs(cfg Config, l SNPLaunch) ([]string, error) {
	if l.OVMF == "" {
		return nil, fmt.Errorf("SEV-SNP launch: no OVMF firmware given: run build/debpin.sh ovmf-amdsev and pass its usr/share/ovmf/OVMF.amdsev.fd")
	}
	if cfg.Kernel == "" {
		return nil, fmt.Errorf("SEV-SNP launch under QEMU: no kernel given (QEMU boots kernel + initramfs measured by OVMF; guest.igvm is for Cloud Hypervisor)")
	}
	hd, err := hostDataBase64(cfg.HostData)
	if err != nil {
		return nil, fmt.Errorf("SEV-SNP launch: %w", err)
	}
	mem := strconv.Itoa(cfg.MemoryMiB) + "M"
	sev := fmt.Sprintf("sev-snp-guest,id=sev0,policy=0x%x,cbitpos=%d,reduced-phys-bits=%d,kernel-hashes=on,host-data=%s",
		l.Policy, l.CBitPos, l.ReducedPhysBits, hd)
	args := []string{
		"-name", "confguest",
		"-machine", "q35,confidential-guest-support=sev0,memory-backend=mem",
		"-accel", string(AccelKVM),
		"-cpu", l.CPUModel,
		"-object", sev,
		"-bios", l.OVMF,
		"-m", mem,
		"-smp", strconv.Itoa(cfg.CPUs),
		"-nodefaults", "-no-user-config", "-no-reboot", "-display", "none",
		"-object", "memory-backend-memfd,id=mem,size=" + mem + ",share=on",
	}
	args = append(args, qemuDevices(cfg, ",disable-legacy=on,iommu_platform=on")...)
	return append(args, HotplugPortArgs()...), nil
}

// HotplugPortArgs are the PCIe root ports a q35 machine hot-plugs containers' disks into
// (AddDisk): q35's root bus takes no hot-plugged devices. They reserve no I/O space, which
// modern virtio devices do not use.
func HotplugPortArgs() []string {
	var args []string
	for i := range HotplugPorts {
		args = append(args, "-device", fmt.Sprintf("pcie-root-port,id=%s,bus=pcie.0,chassis=%d,io-reserve=0", hotplugPortID(i), i+1))
	}
	return args
}
