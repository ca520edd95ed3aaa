package launcher

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"confguest/agent/api/policy"
	"confguest/hostside/vmm"
	"confguest/measure"
)

// SEV-SNP launches. Both VMMs launch the same guest image: QEMU boots bzImage, the
// initramfs and the command line with OVMF measuring them (kernel hashes), Cloud Hypervisor
// boots guest.igvm, which holds all three in measured pages. HOST_DATA is the SHA-256 of the
// policy in both modes.

// SNPLaunch is what the launcher expects of an SEV-SNP launch, computed before boot.
type SNPLaunch struct {
	VMM string // QEMU or CloudHypervisor
	// Measurement is the expected launch digest (hex SHA-384), the MEASUREMENT field of
	// every attestation report of the guest.
	Measurement string
	// HostData is HOST_DATA (64 hex digits) and HostDataFrom says where it came from.
	HostData, HostDataFrom string
	VCPUs                  int
	VCPUType               string // QEMU's -cpu model (QEMU only)
	OVMF                   string // firmware path (QEMU only)
	// Published is the measurement.json value for these launch parameters; "" when they
	// differ from the published ones (then Measurement is computed for them alone).
	Published string
}

// HostDataFor returns the HOST_DATA a policy document binds to: its SHA-256 in hex, as
// confguest policy hash prints it and the agent checks it. A nil document is the empty
// policy, used when no policy is given.
func HostDataFor(doc []byte) string { return policy.HashHex(doc) }

// hostDataFlag is where HOST_DATA comes from when --host-data gives it.
const hostDataFlag = "given with --host-data"

// prepareSNP checks an SEV-SNP launch before anything is built or started: the host must
// run SNP guests under the chosen accelerator, and a Cloud Hypervisor launch must be the
// one guest.igvm is built for (igvmLaunch, here if measurement.json can be read, so that
// a wrong flag is named first; expectSNP checks again once the image is checked).
func prepareSNP(o *Options) error {
	switch o.VMM {
	case CloudHypervisor:
		if pub, err := readPublished(o.ImageDir); err == nil {
			if err := igvmLaunch(o, pub.CloudHypervisor); err != nil {
				return err
			}
		}
	default:
		if o.Accel == vmm.AccelTCG {
			return fmt.Errorf("--accel %s: SEV-SNP guests run under KVM only: drop --accel", o.Accel)
		}
	}
	// Last, so that a wrong flag is named even on a host without SEV-SNP.
	return vmm.ProbeSNP(o.SNPParam)
}

// igvmLaunch holds a Cloud Hypervisor SEV-SNP launch to what guest.igvm is built for, as
// the image's measurement.json publishes it: its vCPUs (its MADT, one VMSA each) and its
// RAM (every page of it is measured). Another size would boot a guest that does not match
// its IGVM.
func igvmLaunch(o *Options, pub *measure.IGVMMeasurement) error {
	if pub == nil || pub.VCPUs == 0 || pub.MemoryMiB == 0 {
		return fmt.Errorf("measurement.json does not say which vCPUs and memory guest.igvm is built for: rebuild with make image")
	}
	if o.CPUs != 0 && o.CPUs != pub.VCPUs {
		return fmt.Errorf("--cpus %d: guest.igvm is built for %d vCPU (its ACPI tables and launch measurement): use --cpus %d with --snp --vmm %s, or --vmm %s",
			o.CPUs, pub.VCPUs, pub.VCPUs, CloudHypervisor, QEMU)
	}
	if o.MemoryMiB != 0 && o.MemoryMiB != pub.MemoryMiB {
		return fmt.Errorf("--memory %dM: guest.igvm is built for %d MiB (every page of it is measured): use --memory %dM with --snp --vmm %s, or --vmm %s",
			o.MemoryMiB, pub.MemoryMiB, pub.MemoryMiB, CloudHypervisor, QEMU)
	}
	o.CPUs, o.MemoryMiB = pub.VCPUs, pub.MemoryMiB
	return nil
}

// snpHostData settles HOST_DATA from a --host-data flag (or "") and the policy document
// (nil before it is known) and says where it came from.
func snpHostData(flag string, doc []byte) (hd, from string, err error) {
	hd = HostDataFor(doc)
	switch {
	case flag == "" && doc == nil:
		from = "SHA-256 of the empty policy; no policy given yet"
	case flag == "":
		from = "SHA-256 of the policy"
	case doc != nil && !strings.EqualFold(flag, hd):
		return "", "", fmt.Errorf("--host-data %s differs from the policy's SHA-256 %s: the agent would refuse the policy: drop --host-data", flag, hd)
	case doc != nil:
		from = "SHA-256 of the policy"
	default:
		hd, from = flag, hostDataFlag
	}
	return strings.ToLower(hd), from, nil
}

// published is the part of the image's measurement.json the launcher compares with.
type published struct {
	QEMU            *measure.Measurement     `json:"qemu_ovmf"`
	CloudHypervisor *measure.IGVMMeasurement `json:"cloud_hypervisor_igvm"`
}

// readPublished reads measurement.json of the guest image in dir.
func readPublished(dir string) (published, error) {
	var p published
	path := filepath.Join(dir, "measurement.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return p, fmt.Errorf("read the published measurement: %w: rebuild with make image", err)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("%s: %w: rebuild with make image", path, err)
	}
	return p, nil
}

// expectSNP computes the launch measurement of the chosen mode and compares it with the
// image's measurement.json when the launch parameters are the published ones.
func (s *Sandbox) expectSNP(hostDataFrom string) (*SNPLaunch, error) {
	pub, err := readPublished(s.image.Dir)
	if err != nil {
		return nil, err
	}
	if s.opts.VMM == CloudHypervisor {
		if err := igvmLaunch(&s.opts, pub.CloudHypervisor); err != nil {
			return nil, err
		}
	}
	l := &SNPLaunch{VMM: s.opts.VMM, HostData: s.opts.HostData, HostDataFrom: hostDataFrom, VCPUs: s.opts.CPUs}
	if l.VCPUs == 0 {
		l.VCPUs = 1
	}
	if s.opts.VMM == CloudHypervisor {
		if !s.image.Lists("guest.igvm") {
			return nil, fmt.Errorf("%s: guest.igvm is not in manifest.json: rebuild with make image", s.image.Dir)
		}
		m, err := measure.MeasureIGVM(s.image.Path("guest.igvm"), measure.IGVMOptions{Rules: measure.RulesKVM, VCPUs: l.VCPUs})
		if err != nil {
			return nil, fmt.Errorf("expected SEV-SNP launch measurement: %w", err)
		}
		l.Measurement = m.Measurement
		if p := pub.CloudHypervisor; p != nil && p.VCPUs == l.VCPUs {
			if p.Measurement != m.Measurement {
				return nil, fmt.Errorf("guest.igvm measures %s but measurement.json publishes %s (igvm sha256 %s, published %s): rebuild with make image",
					m.Measurement, p.Measurement, m.IGVM.SHA256, p.IGVM.SHA256)
			}
			l.Published = p.Measurement
		}
		return l, nil
	}

	l.OVMF = s.opts.OVMF
	if l.OVMF == "" {
		if l.OVMF = s.findOVMF(); l.OVMF == "" {
			return nil, fmt.Errorf("OVMF.amdsev.fd not found in %s: run build/debpin.sh ovmf-amdsev (the pinned firmware the measurement covers) or give --ovmf", filepath.Join(s.cacheDir(), "debs"))
		}
	}
	l.VCPUType = vmm.DefaultSNPCPUModel
	if pub.QEMU != nil && pub.QEMU.VCPUType != "" {
		l.VCPUType = pub.QEMU.VCPUType // the model the published measurement assumes
	}
	cmdline, err := s.image.Cmdline()
	if err != nil {
		return nil, err
	}
	m, err := measure.ForImage(l.OVMF, s.image.Path("bzImage"), s.image.Path("initramfs.cpio.gz"), cmdline, l.VCPUs, l.VCPUType)
	if err != nil {
		return nil, fmt.Errorf("expected SEV-SNP launch measurement: %w", err)
	}
	l.Measurement = m.Measurement
	if p := pub.QEMU; p != nil && p.VCPUs == l.VCPUs {
		if p.Measurement != m.Measurement {
			return nil, fmt.Errorf("the launch measures %s but measurement.json publishes %s: %s", m.Measurement, p.Measurement, qemuInputsDiffer(m, p))
		}
		l.Published = p.Measurement
	}
	return l, nil
}

// qemuInputsDiffer names the inputs of two QEMU measurements that differ.
func qemuInputsDiffer(got, pub *measure.Measurement) string {
	var d []string
	if got.OVMF.SHA256 != pub.OVMF.SHA256 {
		d = append(d, fmt.Sprintf("firmware %s has sha256 %s, the published one %s: use the pinned ovmf-amdsev (build/debpin.sh ovmf-amdsev)", got.OVMF.Name, got.OVMF.SHA256, pub.OVMF.SHA256))
	}
	if got.CmdlineSHA256 != pub.CmdlineSHA256 {
		d = append(d, "the kernel command line differs: rebuild with make image")
	}
	if got.Kernel != nil && pub.Kernel != nil && got.Kernel.SHA256 != pub.Kernel.SHA256 ||
		got.Initrd != nil && pub.Initrd != nil && got.Initrd.SHA256 != pub.Initrd.SHA256 {
		d = append(d, "the kernel or initramfs differs: rebuild with make image")
	}
	if got.VCPUType != pub.VCPUType || got.GuestFeatures != pub.GuestFeatures {
		d = append(d, fmt.Sprintf("vCPU %s features %s, published %s features %s", got.VCPUType, got.GuestFeatures, pub.VCPUType, pub.GuestFeatures))
	}
	if len(d) == 0 {
		return "rebuild with make image"
	}
	return strings.Join(d, "; ")
}

// findOVMF returns the pinned ovmf-amdsev firmware build/debpin.sh unpacked into the cache,
// or "".
func (s *Sandbox) findOVMF() string {
	m, _ := filepath.Glob(filepath.Join(s.cacheDir(), "debs", "ovmf-amdsev_*", "usr", "share", "ovmf", "OVMF.amdsev.fd"))
	if len(m) == 0 {
		return ""
	}
	sort.Strings(m)
	return m[len(m)-1]
}

// printSNP prints what the launch will be measured as, before boot.
func (s *Sandbox) printSNP() {
	l := s.snp
	how := fmt.Sprintf("%s + guest.igvm, %d vCPU, %d MiB", CloudHypervisor, l.VCPUs, s.opts.MemoryMiB)
	if l.VMM == QEMU {
		how = fmt.Sprintf("%s + %s, %d × %s", QEMU, filepath.Base(l.OVMF), l.VCPUs, l.VCPUType)
	}
	pub := "matches measurement.json"
	if l.Published == "" {
		pub = "not the published value: measurement.json covers other launch parameters"
	}
	s.progress("SEV-SNP launch (%s): expected MEASUREMENT %s (%s)", how, l.Measurement, pub)
	if !s.hostDataGiven {
		// Boot takes the policy, often written once the container disks are built.
		s.progress("SEV-SNP HOST_DATA: the SHA-256 of the policy, printed at boot")
		return
	}
	s.progress("SEV-SNP HOST_DATA %s (%s)", l.HostData, l.HostDataFrom)
}
