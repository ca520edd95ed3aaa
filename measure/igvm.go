package measure

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"confguest/measure/igvm"
)

// ErrIGVMLaunch: an IGVM file cannot be launched under the chosen rules (no SEV-SNP
// platform, no VP context, a feature the VMM rejects).
var ErrIGVMLaunch = errors.New("IGVM file cannot be launched")

// Rules names how a VMM launches an IGVM file on SEV-SNP, which decides its launch digest.
type Rules int

const (
	// RulesKVM is Cloud Hypervisor on KVM (the default): pages in file order, empty pages
	// as ZERO pages, parameter-area pages UNMEASURED, the VP context not launched as a page
	// but one KVM-built VMSA per vCPU at VMSAGPA after all pages.
	RulesKVM Rules = iota
	// RulesMSHV is Hyper-V / MSHV, the digest igvmgen prints: every listed page a NORMAL
	// page (empty ones too, with the hash of a zero page), parameter-area pages
	// UNMEASURED, and the file's own VMSA measured as a VMSA page at the VP context's GPA,
	// in file order.
	RulesMSHV
)

func (r Rules) String() string {
	switch r {
	case RulesKVM:
		return "kvm"
	case RulesMSHV:
		return "mshv"
	}
	return fmt.Sprintf("Rules(%d)", int(r))
}

// ParseRules reads a rule set name: "kvm" or "mshv".
func ParseRules(s string) (Rules, error) {
	switch s {
	case "kvm", "":
		return RulesKVM, nil
	case "mshv":
		return RulesMSHV, nil
	}
	return 0, fmt.Errorf("IGVM rules %q: want kvm (Cloud Hypervisor on KVM) or mshv (Hyper-V, igvmgen): %w", s, ErrInvalidOption)
}

// IGVMOptions are the launch parameters an IGVM digest depends on besides the file.
type IGVMOptions struct {
	Rules Rules
	// VCPUs is the guest's vCPU count. Under RulesKVM every vCPU adds a VMSA page; under
	// RulesMSHV only the file's VP contexts are measured and VCPUs is ignored.
	VCPUs int
	// HostCR4NoMCE models a host whose CR4.MCE is clear: KVM copies the host's CR4.MCE into
	// the guest's CR4 (inferred; MCE is set on ordinary hosts, so the default keeps it).
	HostCR4NoMCE bool
	// VCPUSig is the CPUID signature (family, model, stepping) of the host CPU, which
	// Cloud Hypervisor passes to the guest and KVM puts in RDX of the reset-state VMSA of
	// vCPUs without a VP context (RulesKVM, VCPUs > 1).
	VCPUSig uint32
}

// KVM's accepted SEV features (KVM_SEV_INIT2 vmsa_features): SNPActive, DebugSwap,
// SecureTSC.
const (
	sevFeatureSNP        = 1 << 0
	sevFeatureDebugSwap  = 1 << 5
	sevFeatureSecureTSC  = 1 << 9
	kvmSEVFeaturesAccept = sevFeatureSNP | sevFeatureDebugSwap | sevFeatureSecureTSC
)

// IGVMBytes parses an IGVM file and computes its launch digest.
func IGVMBytes(file []byte, o IGVMOptions) (Digest, error) {
	f, err := igvm.Parse(file)
	if err != nil {
		return Digest{}, err
	}
	return IGVM(f, o)
}

// IGVM computes the SEV-SNP launch digest of an IGVM file under o.Rules. Only directives
// for the file's SEV-SNP platform (by compatibility mask) take part.
func IGVM(f *igvm.File, o IGVMOptions) (Digest, error) {
	var d Digest
	plat, ok := f.Platform(igvm.PlatformSEVSNP)
	if !ok {
		return d, fmt.Errorf("no SEV-SNP SUPPORTED_PLATFORM header: %w", ErrIGVMLaunch)
	}
	if o.Rules == RulesKVM && (o.VCPUs < 1 || o.VCPUs > MaxVCPUs) {
		return d, fmt.Errorf("vCPU count %d: want 1 to %d: %w", o.VCPUs, MaxVCPUs, ErrInvalidOption)
	}
	if o.Rules != RulesKVM && o.Rules != RulesMSHV {
		return d, fmt.Errorf("unknown IGVM rules %v: %w", o.Rules, ErrInvalidOption)
	}
	mask := plat.CompatibilityMask
	areas := f.ParameterAreas()
	vps := map[uint16]igvm.VPContext{} // RulesKVM: the VP context of each vCPU
	for i, h := range f.Headers {
		if m, ok := igvm.CompatibilityMask(h.Body); ok && m&mask == 0 {
			continue // another platform's directive
		}
		if o.Rules == RulesKVM && !kvmLoads(h.Body.Type()) {
			return d, fmt.Errorf("header %d is %v, which Cloud Hypervisor does not load: %w", i, h.Body.Type(), ErrIGVMLaunch)
		}
		switch x := h.Body.(type) {
		case igvm.PageData:
			if err := igvmPage(&d, f, x, o.Rules); err != nil {
				return d, err
			}
		case igvm.ParameterInsert:
			d.UpdateRange(PageUnmeasured, x.GPA, areas[x.Index].NumberOfBytes)
		case igvm.VPContext:
			if o.Rules == RulesMSHV {
				vmsa, err := f.VMSA(x)
				if err != nil {
					return d, err
				}
				d.Update(PageVMSA, x.GPA, vmsa)
				continue
			}
			vps[x.VPIndex] = x // Cloud Hypervisor loads the last one into the vCPU
		}
	}
	if o.Rules == RulesMSHV {
		return d, nil
	}
	// The VMSA pages: after all pages, one per vCPU, in vCPU order (KVM's
	// SNP_LAUNCH_FINISH walks the vCPUs), all at VMSAGPA.
	vp0, ok := vps[0]
	if !ok {
		return d, fmt.Errorf("no VP context for vCPU 0 on the SEV-SNP platform: %w", ErrIGVMLaunch)
	}
	v0, err := KVMVMSA(f, vp0, o)
	if err != nil {
		return d, err
	}
	features := v0.U64(igvm.VMSASEVFeatures)
	d.Update(PageVMSA, VMSAGPA, v0[:])
	for i := 1; i < o.VCPUs; i++ {
		vp, ok := vps[uint16(i)]
		if !ok {
			d.Update(PageVMSA, VMSAGPA, kvmResetVMSA(features, o))
			continue
		}
		b, err := f.VMSA(vp)
		if err != nil {
			return d, err
		}
		var src igvm.VMSA
		copy(src[:], b)
		v := kvmVMSAFrom(&src, features, o)
		d.Update(PageVMSA, VMSAGPA, v[:])
	}
	return d, nil
}

// kvmLoads reports whether Cloud Hypervisor's IGVM loader handles directives of type t
// (it stops on the others).
func kvmLoads(t igvm.HeaderType) bool {
	switch t {
	case igvm.TypePageData, igvm.TypeParameterArea, igvm.TypeParameterInsert, igvm.TypeVPCount,
		igvm.TypeMemoryMap, igvm.TypeCommandLine, igvm.TypeRequiredMemory, igvm.TypeVPContext,
		igvm.TypeSNPIDBlock:
		return true
	}
	return t < 0x301 // platform and initialization headers
}

// igvmPage extends d with one PAGE_DATA directive. Under RulesKVM it follows Cloud
// Hypervisor's loader: the unmeasured flag counts for normal pages only, the shared flag
// is not looked at, CPUID_XF pages are refused. Under RulesMSHV it follows igvmgen, which
// leaves pages with flag bit 2 (its "guest invalid", igvm_defs' shared) out of the launch.
func igvmPage(d *Digest, f *igvm.File, p igvm.PageData, rules Rules) error {
	if p.Flags&igvm.PageFlag2M != 0 {
		return fmt.Errorf("page at GPA 0x%x is a 2 MiB page, which this calculator does not measure: %w", p.GPA, ErrIGVMLaunch)
	}
	if rules == RulesMSHV && p.Flags&igvm.PageFlagShared != 0 {
		return nil
	}
	switch p.DataType {
	case igvm.DataSecrets:
		d.Update(PageSecrets, p.GPA, nil)
		return nil
	case igvm.DataCPUID:
		d.Update(PageCPUID, p.GPA, nil)
		return nil
	case igvm.DataCPUIDXF:
		if rules == RulesKVM {
			return fmt.Errorf("page at GPA 0x%x has data type CPUID_XF, which Cloud Hypervisor does not load: %w", p.GPA, ErrIGVMLaunch)
		}
		d.Update(PageCPUID, p.GPA, nil)
		return nil
	}
	if p.Flags&igvm.PageFlagUnmeasured != 0 {
		d.Update(PageUnmeasured, p.GPA, nil)
		return nil
	}
	data, err := f.PageContents(p)
	if err != nil {
		return err
	}
	switch {
	case data != nil:
		d.Update(PageNormal, p.GPA, data)
	case rules == RulesMSHV:
		d.Update(PageNormal, p.GPA, zeroPage[:])
	default:
		d.Update(PageZero, p.GPA, nil)
	}
	return nil
}

var zeroPage [PageSize]byte

// IGVMMeasurement is the launch digest of an IGVM file with the inputs it depends on, for
// publishing beside a build (measurement.json) or printing as JSON.
type IGVMMeasurement struct {
	Mode        string     `json:"mode"`  // ModeSNP
	VMM         string     `json:"vmm"`   // "cloud-hypervisor" (RulesKVM) or "hyper-v" (RulesMSHV)
	Rules       string     `json:"rules"` // "kvm" or "mshv"
	Measurement string     `json:"measurement"`
	IGVM        FileDigest `json:"igvm"`
	VCPUs       int        `json:"vcpus,omitempty"` // RulesKVM only
	// MemoryMiB is the guest RAM the IGVM file is built for (every page of it is
	// measured); the builder sets it, MeasureIGVM leaves it 0.
	MemoryMiB int `json:"memory_mib,omitempty"`

	Digest Digest `json:"-"`
}

// MeasureIGVM reads the IGVM file at path and computes its launch digest.
func MeasureIGVM(path string, o IGVMOptions) (*IGVMMeasurement, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read IGVM file: %w", err)
	}
	d, err := IGVMBytes(b, o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	sum := sha256.Sum256(b)
	m := &IGVMMeasurement{
		Mode:        ModeSNP,
		VMM:         "cloud-hypervisor",
		Rules:       o.Rules.String(),
		Measurement: d.String(),
		IGVM:        FileDigest{Name: filepath.Base(path), Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])},
		VCPUs:       o.VCPUs,
		Digest:      d,
	}
	if o.Rules == RulesMSHV {
		m.VMM, m.VCPUs = "hyper-v", 0
	}
	return m, nil
}
