package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"confguest/measure"
)

func init() {
	register(command{
		name:    "measure",
		summary: "compute the expected SEV-SNP launch measurement (flags as sev-snp-measure)",
		run:     runMeasure,
	})
}

// measureArgs holds the flags of `confguest measure`. Each launch kind (QEMU + OVMF
// today) reads the fields it needs; set records which flags the command line gave.
type measureArgs struct {
	mode          string
	vmmType       string
	ovmf          string
	kernel        string
	initrd        string
	appendLine    string
	vcpus         int
	vcpuType      string
	vcpuSig       string
	vcpuFamily    string
	vcpuModel     string
	vcpuStepping  string
	guestFeatures string
	ovmfHash      string
	outputFormat  string
	igvm          string // --igvm: measure an IGVM launch instead (hostside/cli/igvm.go)
	rules         string

	set map[string]bool
	vmm measure.VMMType
}

func (a *measureArgs) register(fs *flag.FlagSet) {
	fs.StringVar(&a.mode, "mode", measure.ModeSNP, "measurement: "+measure.ModeSNP+" (launch digest) or "+measure.ModeOVMFHash+" (firmware pages only)")
	fs.StringVar(&a.vmmType, "vmm-type", "QEMU", "VMM that launches the guest: QEMU, ec2 or gce")
	fs.StringVar(&a.ovmf, "ovmf", "", "OVMF firmware image (AmdSev build), required")
	fs.StringVar(&a.kernel, "kernel", "", "kernel image booted with QEMU -kernel (kernel-hashes=on)")
	fs.StringVar(&a.initrd, "initrd", "", "initrd booted with QEMU -initrd (needs --kernel)")
	fs.StringVar(&a.appendLine, "append", "", "kernel command line given to QEMU -append (needs --kernel)")
	fs.IntVar(&a.vcpus, "vcpus", 0, "number of guest vCPUs, required in mode snp")
	fs.StringVar(&a.vcpuType, "vcpu-type", "", "QEMU CPU model: "+strings.Join(measure.VCPUTypes(), ", "))
	fs.StringVar(&a.vcpuSig, "vcpu-sig", "", "vCPU CPUID signature (family/model/stepping), e.g. 0xa00f11")
	fs.StringVar(&a.vcpuFamily, "vcpu-family", "", "vCPU family (with --vcpu-model and --vcpu-stepping)")
	fs.StringVar(&a.vcpuModel, "vcpu-model", "", "vCPU model")
	fs.StringVar(&a.vcpuStepping, "vcpu-stepping", "", "vCPU stepping")
	fs.StringVar(&a.guestFeatures, "guest-features", "0x1", "SEV_FEATURES of the guest's VMSAs")
	fs.StringVar(&a.ovmfHash, "snp-ovmf-hash", "", "precomputed OVMF hash (96 hex digits) to start from instead of the firmware pages")
	fs.StringVar(&a.outputFormat, "output-format", "hex", "hex, base64, or json (the digest with every input's sha256)")
	fs.StringVar(&a.igvm, "igvm", "", "IGVM file launched by Cloud Hypervisor, instead of --ovmf (with --rules, --vcpus)")
	fs.StringVar(&a.rules, "rules", "kvm", "with --igvm: kvm (Cloud Hypervisor on KVM) or mshv (Hyper-V, as igvmgen prints)")
}

// parseUint reads a flag's number in Go syntax (decimal, 0x hex, 0o octal, 0b binary).
func parseUint(name, s string, bits int) (uint64, error) {
	v, err := strconv.ParseUint(s, 0, bits)
	if err != nil {
		return 0, usagef("--%s %q: want a number such as 25 or 0x19 that fits in %d bits", name, s, bits)
	}
	return v, nil
}

// vcpu resolves the vCPU from exactly one of --vcpu-type, --vcpu-sig or
// --vcpu-family/--vcpu-model/--vcpu-stepping.
func (a *measureArgs) vcpu() (name string, sig uint32, err error) {
	fms := a.set["vcpu-family"] || a.set["vcpu-model"] || a.set["vcpu-stepping"]
	given := 0
	for _, b := range []bool{a.set["vcpu-type"], a.set["vcpu-sig"], fms} {
		if b {
			given++
		}
	}
	switch {
	case given == 0 && a.vmm != measure.VMMQEMU:
		return "", 0, nil // ec2 and gce set RDX themselves
	case given == 0:
		return "", 0, usagef("missing --vcpu-type, --vcpu-sig or --vcpu-family/--vcpu-model/--vcpu-stepping in mode %s", a.mode)
	case given > 1:
		return "", 0, usagef("give only one of --vcpu-type, --vcpu-sig or --vcpu-family/--vcpu-model/--vcpu-stepping")
	case a.set["vcpu-type"]:
		v, err := measure.VCPUByName(a.vcpuType)
		if err != nil {
			return "", 0, usagef("%v", err)
		}
		return v.Name, v.Sig, nil
	case a.set["vcpu-sig"]:
		s, err := parseUint("vcpu-sig", a.vcpuSig, 32)
		return "", uint32(s), err
	}
	if !a.set["vcpu-family"] || !a.set["vcpu-model"] || !a.set["vcpu-stepping"] {
		return "", 0, usagef("--vcpu-family, --vcpu-model and --vcpu-stepping go together: give all three")
	}
	var fmsv [3]uint64
	for i, f := range []struct{ name, val string }{{"vcpu-family", a.vcpuFamily}, {"vcpu-model", a.vcpuModel}, {"vcpu-stepping", a.vcpuStepping}} {
		if fmsv[i], err = parseUint(f.name, f.val, 8); err != nil {
			return "", 0, err
		}
	}
	return "", measure.CPUSig(uint32(fmsv[0]), uint32(fmsv[1]), uint32(fmsv[2])), nil
}

// qemuOVMF measures a QEMU launch of an OVMF image.
func (a *measureArgs) qemuOVMF() (*measure.Measurement, error) {
	if a.ovmf == "" {
		return nil, usagef("missing --ovmf FILE (the OVMF firmware image, e.g. OVMF.amdsev.fd)")
	}
	o := measure.Options{Mode: a.mode, OVMF: a.ovmf, VMM: a.vmm}
	if a.mode == measure.ModeOVMFHash {
		return measure.Measure(o)
	}
	if !a.set["vcpus"] {
		return nil, usagef("missing --vcpus N in mode %s", a.mode)
	}
	if a.vcpus < 1 {
		return nil, usagef("--vcpus %d: want at least 1", a.vcpus)
	}
	if a.kernel == "" && (a.set["initrd"] || a.set["append"]) {
		return nil, usagef("--initrd and --append need --kernel: QEMU measures them only when it boots a kernel directly")
	}
	name, sig, err := a.vcpu()
	if err != nil {
		return nil, err
	}
	features, err := parseUint("guest-features", a.guestFeatures, 64)
	if err != nil {
		return nil, err
	}
	o.Kernel, o.Initrd, o.Append = a.kernel, a.initrd, a.appendLine
	o.VCPUs, o.VCPUType, o.VCPUSig, o.GuestFeatures = a.vcpus, name, sig, features
	o.OVMFHash = a.ovmfHash
	return measure.Measure(o)
}

func runMeasure(ctx context.Context, args []string, stdio Stdio) error {
	fs := newFlags("measure", stdio)
	a := measureArgs{set: map[string]bool{}}
	a.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q: all inputs are given by flags", fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) { a.set[f.Name] = true })
	switch a.outputFormat {
	case "hex", "base64", "json":
	default:
		return usagef("--output-format %q: want hex, base64 or json", a.outputFormat)
	}
	switch a.mode {
	case measure.ModeSNP, measure.ModeOVMFHash:
	default:
		return usagef("--mode %q: want %s or %s", a.mode, measure.ModeSNP, measure.ModeOVMFHash)
	}
	vmm, err := measure.ParseVMMType(a.vmmType)
	if err != nil {
		return usagef("--vmm-type %q: want QEMU, ec2 or gce", a.vmmType)
	}
	a.vmm = vmm
	if a.mode == measure.ModeOVMFHash && a.set["snp-ovmf-hash"] {
		return usagef("--snp-ovmf-hash makes no sense in mode %s, which computes it", a.mode)
	}
	if a.igvm != "" {
		m, err := a.igvmMeasurement()
		if err != nil {
			return err
		}
		return printMeasurement(stdio.Out, m.Digest, m, a.outputFormat)
	} else if a.set["rules"] {
		return usagef("--rules needs --igvm FILE")
	}
	m, err := a.qemuOVMF()
	if err != nil {
		return err
	}
	return printMeasurement(stdio.Out, m.Digest, m, a.outputFormat)
}

// printMeasurement writes the digest alone (hex or base64, one line) or m, the
// measurement with its inputs, as JSON.
func printMeasurement(w io.Writer, d measure.Digest, m any, format string) error {
	var err error
	switch format {
	case "base64":
		_, err = fmt.Fprintln(w, base64.StdEncoding.EncodeToString(d[:]))
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		err = enc.Encode(m)
	default:
		_, err = fmt.Fprintln(w, d)
	}
	if err != nil {
		return fmt.Errorf("write measurement: %w", err)
	}
	return nil
}
