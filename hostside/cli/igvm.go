package cli

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"confguest/measure"
	"confguest/measure/bootparams"
	"confguest/measure/igvm"
)

func init() {
	register(command{
		name:    "igvm",
		summary: "inspect an IGVM file: igvm inspect FILE",
		subs: []command{
			{name: "inspect", summary: "print an IGVM file's headers, measured pages and command line", run: runIGVMInspect},
		},
	})
}

func runIGVMInspect(ctx context.Context, args []string, stdio Stdio) error {
	fs := newFlags("igvm inspect", stdio)
	fs.Usage = func() {
		fmt.Fprintln(stdio.Err, "usage: confguest igvm inspect FILE")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("igvm inspect takes one IGVM file, got %d arguments", fs.NArg())
	}
	path := fs.Arg(0)
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read IGVM file: %w", err)
	}
	f, err := igvm.Parse(b)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return inspectIGVM(stdio.Out, path, f)
}

// pageKind names how a page is imported, for grouping pages into ranges.
func pageKind(f *igvm.File, p igvm.PageData) string {
	var k string
	switch p.DataType {
	case igvm.DataSecrets:
		k = "secrets"
	case igvm.DataCPUID:
		k = "cpuid"
	case igvm.DataCPUIDXF:
		k = "cpuid-xf"
	default:
		if p.FileOffset == 0 {
			k = "zero"
		} else {
			k = "data"
		}
	}
	if p.Flags&igvm.PageFlagUnmeasured != 0 {
		k += ",unmeasured"
	}
	if p.Flags&igvm.PageFlagShared != 0 {
		k += ",shared"
	}
	if p.Flags&igvm.PageFlag2M != 0 {
		k += ",2M"
	}
	return k
}

func inspectIGVM(w io.Writer, path string, f *igvm.File) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: IGVM format %d, %d bytes, %d headers, file data from offset 0x%x\n",
		path, igvm.FormatVersion, f.Size(), len(f.Headers), f.DataStart())

	counts := map[igvm.HeaderType]int{}
	var order []igvm.HeaderType
	for _, h := range f.Headers {
		t := h.Body.Type()
		if counts[t] == 0 {
			order = append(order, t)
		}
		counts[t]++
	}
	b.WriteString("\nheaders:\n")
	for _, t := range order {
		fmt.Fprintf(&b, "  %-28s %d\n", t, counts[t])
	}

	b.WriteString("\nplatform and initialization:\n")
	for _, h := range f.Headers {
		switch x := h.Body.(type) {
		case igvm.SupportedPlatform:
			fmt.Fprintf(&b, "  platform %s: mask 0x%x, highest VTL %d, version %d, shared GPA boundary 0x%x\n",
				platformName(x.PlatformType), x.CompatibilityMask, x.HighestVTL, x.PlatformVersion, x.SharedGPABoundary)
		case igvm.GuestPolicy:
			fmt.Fprintf(&b, "  guest policy 0x%x (%s), mask 0x%x\n", x.Policy, snpPolicy(x.Policy), x.CompatibilityMask)
		case igvm.RequiredMemory:
			fmt.Fprintf(&b, "  required memory 0x%x-0x%x, flags 0x%x\n", x.GPA, x.GPA+uint64(x.NumberOfBytes)-1, x.Flags)
		}
	}

	b.WriteString("\npages (in file order, consecutive pages of one kind grouped):\n")
	var run struct {
		start, next uint64
		kind        string
		n           int
	}
	flush := func() {
		if run.n > 0 {
			fmt.Fprintf(&b, "  0x%012x-0x%012x %7d %-5s %s\n", run.start, run.next-1, run.n, plural(run.n, "page"), run.kind)
		}
	}
	var total int
	for _, h := range f.Headers {
		p, ok := h.Body.(igvm.PageData)
		if !ok {
			continue
		}
		total++
		k := pageKind(f, p)
		if run.n > 0 && k == run.kind && p.GPA == run.next {
			run.n++
			run.next += p.Size()
			continue
		}
		flush()
		run.start, run.next, run.kind, run.n = p.GPA, p.GPA+p.Size(), k, 1
	}
	flush()
	fmt.Fprintf(&b, "  total %d pages\n", total)

	areas := f.ParameterAreas()
	for _, h := range f.Headers {
		switch x := h.Body.(type) {
		case igvm.ParameterArea:
			fmt.Fprintf(&b, "\nparameter area %d: %d bytes\n", x.Index, x.NumberOfBytes)
		case igvm.Parameter:
			fmt.Fprintf(&b, "  %s at byte %d of area %d\n", x.Kind, x.ByteOffset, x.AreaIndex)
		case igvm.ParameterInsert:
			fmt.Fprintf(&b, "  area %d inserted at 0x%x-0x%x (unmeasured)\n", x.Index, x.GPA, x.GPA+areas[x.Index].NumberOfBytes-1)
		}
	}

	for _, h := range f.Headers {
		switch x := h.Body.(type) {
		case igvm.VPContext:
			if err := writeVPContext(&b, f, x); err != nil {
				return err
			}
		case igvm.SNPIDBlock:
			fmt.Fprintf(&b, "\nSNP ID block: launch digest %x\n  family %x, image %x, version %d, guest SVN %d, author key %d\n",
				x.LD, x.FamilyID, x.ImageID, x.Version, x.GuestSVN, x.AuthorKeyEnabled)
		}
	}

	b.WriteString("\ncommand line:\n")
	if line, gpa, ok := findCmdline(f); ok {
		fmt.Fprintf(&b, "  in measured pages at 0x%x (boot_params.cmd_line_ptr): %s\n", gpa, strconv.Quote(line))
	} else {
		b.WriteString("  none found in measured pages (no Linux boot_params with a command line)\n")
	}
	if counts[igvm.TypeCommandLine] > 0 {
		b.WriteString("  a COMMAND_LINE parameter asks the VMM for a command line: that one is NOT measured\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func plural(n int, s string) string {
	if n == 1 {
		return s
	}
	return s + "s"
}

func platformName(t uint8) string {
	switch t {
	case igvm.PlatformNative:
		return "native"
	case igvm.PlatformVSMIsolation:
		return "VSM isolation"
	case igvm.PlatformSEVSNP:
		return "SEV-SNP"
	case igvm.PlatformTDX:
		return "TDX"
	}
	return fmt.Sprintf("type %d", t)
}

// snpPolicy describes SNP guest policy bits.
func snpPolicy(p uint64) string {
	parts := []string{fmt.Sprintf("ABI %d.%d", p>>8&0xff, p&0xff)}
	for _, bit := range []struct {
		n    uint
		name string
	}{{16, "SMT"}, {18, "migration agent"}, {19, "DEBUG"}, {20, "single socket"}} {
		if p>>bit.n&1 == 1 {
			parts = append(parts, bit.name)
		}
	}
	return strings.Join(parts, ", ")
}

func writeVPContext(b *strings.Builder, f *igvm.File, vp igvm.VPContext) error {
	raw, err := f.VMSA(vp)
	if err != nil {
		return err
	}
	var v igvm.VMSA
	copy(v[:], raw)
	fmt.Fprintf(b, "\nVP context for vCPU %d (VMSA at GPA 0x%x, mask 0x%x):\n", vp.VPIndex, vp.GPA, vp.CompatibilityMask)
	for i := range igvm.SegTR + 1 {
		fmt.Fprintf(b, "  %-4s %s\n", igvm.SegName(i), v.Seg(i))
	}
	regs := []struct {
		name string
		off  int
	}{
		{"rip", igvm.VMSARIP}, {"rflags", igvm.VMSARFLAGS}, {"cr0", igvm.VMSACR0}, {"cr3", igvm.VMSACR3},
		{"cr4", igvm.VMSACR4}, {"efer", igvm.VMSAEFER}, {"xcr0", igvm.VMSAXCR0}, {"sev_features", igvm.VMSASEVFeatures},
		{"virtual_tom", igvm.VMSAVirtualTOM},
	}
	for _, r := range regs {
		fmt.Fprintf(b, "  %-12s 0x%x\n", r.name, v.U64(r.off))
	}
	var nonzero []string
	for _, r := range igvm.GPRs {
		if x := v.U64(r.Off); x != 0 {
			nonzero = append(nonzero, fmt.Sprintf("%s=0x%x", r.Name, x))
		}
	}
	if len(nonzero) == 0 {
		nonzero = []string{"all zero"}
	}
	fmt.Fprintf(b, "  gprs         %s\n", strings.Join(nonzero, " "))
	return nil
}

// measuredPages maps the GPA of each measured 4 KiB data page to its contents; pages
// without data (zeros) map to nil.
func measuredPages(f *igvm.File) map[uint64][]byte {
	pages := map[uint64][]byte{}
	for _, h := range f.Headers {
		p, ok := h.Body.(igvm.PageData)
		if !ok || p.Flags != 0 || p.DataType != igvm.DataNormal {
			continue
		}
		c, err := f.PageContents(p)
		if err != nil {
			continue
		}
		pages[p.GPA] = c
	}
	return pages
}

// findCmdline finds the Linux boot_params among the measured pages and reads the
// NUL-terminated command line at its cmd_line_ptr (with ext_cmd_line_ptr), which must lie
// in measured pages too. boot_params is looked for where a VP context's RSI points (the
// boot protocol's register for it), then at the start of every measured page; it is
// recognised by its setup header (bootparams.HasHeader).
func findCmdline(f *igvm.File) (string, uint64, bool) {
	pages := measuredPages(f)
	var candidates []uint64
	for _, h := range f.Headers {
		if vp, ok := h.Body.(igvm.VPContext); ok {
			if raw, err := f.VMSA(vp); err == nil {
				candidates = append(candidates, binary.LittleEndian.Uint64(raw[igvm.VMSARSI:]))
			}
		}
	}
	var aligned []uint64
	for gpa := range pages {
		aligned = append(aligned, gpa)
	}
	sort.Slice(aligned, func(i, j int) bool { return aligned[i] < aligned[j] })
	candidates = append(candidates, aligned...)
	for _, gpa := range candidates {
		bp, ok := readMeasured(pages, gpa, bootparams.HeaderEnd)
		if !ok || !bootparams.HasHeader(bp) {
			continue
		}
		ptr := bootparams.CmdLineAddress(bp)
		if ptr == 0 {
			continue
		}
		if line, ok := readString(pages, ptr, 1<<16); ok {
			return line, ptr, true
		}
	}
	return "", 0, false
}

// readMeasured reads n bytes at gpa from measured pages (zeros for pages without data).
func readMeasured(pages map[uint64][]byte, gpa uint64, n int) ([]byte, bool) {
	out := make([]byte, 0, n)
	for len(out) < n {
		page, off := gpa&^(igvm.PageSize-1), gpa%igvm.PageSize
		c, ok := pages[page]
		if !ok {
			return nil, false
		}
		if c == nil {
			c = make([]byte, igvm.PageSize)
		}
		k := min(uint64(n-len(out)), igvm.PageSize-off)
		out = append(out, c[off:off+k]...)
		gpa += k
	}
	return out, true
}

// readString reads a NUL-terminated string at gpa from measured pages.
func readString(pages map[uint64][]byte, gpa uint64, max int) (string, bool) {
	var s []byte
	for len(s) < max {
		page, off := gpa&^(igvm.PageSize-1), gpa%igvm.PageSize
		c, ok := pages[page]
		if !ok {
			return "", false // not a measured page
		}
		if c == nil {
			return string(s), true // a zero page ends the string
		}
		for ; off < igvm.PageSize; off++ {
			if c[off] == 0 {
				return string(s), true
			}
			s = append(s, c[off])
		}
		gpa = page + igvm.PageSize
	}
	return "", false
}

// igvmMeasurement computes `confguest measure --igvm FILE`.
func (a *measureArgs) igvmMeasurement() (*measure.IGVMMeasurement, error) {
	for _, name := range []string{"ovmf", "kernel", "initrd", "append", "snp-ovmf-hash", "guest-features", "vmm-type"} {
		if a.set[name] {
			return nil, usagef("--%s does not apply to --igvm: the IGVM file holds the whole guest", name)
		}
	}
	if a.mode != measure.ModeSNP {
		return nil, usagef("--mode %s does not apply to --igvm", a.mode)
	}
	rules, err := measure.ParseRules(a.rules)
	if err != nil {
		return nil, usagef("--rules %q: want kvm (Cloud Hypervisor on KVM) or mshv (Hyper-V, as igvmgen prints)", a.rules)
	}
	o := measure.IGVMOptions{Rules: rules, VCPUs: 1}
	sigGiven := a.set["vcpu-type"] || a.set["vcpu-sig"] || a.set["vcpu-family"] || a.set["vcpu-model"] || a.set["vcpu-stepping"]
	if rules == measure.RulesMSHV {
		if a.set["vcpus"] || sigGiven {
			return nil, usagef("--vcpus and the --vcpu-* flags do not apply to --rules mshv: only the file's VP contexts are measured")
		}
		return measure.MeasureIGVM(a.igvm, o)
	}
	if a.set["vcpus"] {
		if a.vcpus < 1 {
			return nil, usagef("--vcpus %d: want at least 1", a.vcpus)
		}
		o.VCPUs = a.vcpus
	}
	switch {
	case sigGiven:
		_, sig, err := a.vcpu()
		if err != nil {
			return nil, err
		}
		o.VCPUSig = sig
	case o.VCPUs > 1:
		return nil, usagef("--vcpus %d needs --vcpu-type, --vcpu-sig or --vcpu-family/--vcpu-model/--vcpu-stepping: KVM puts the host CPU's signature in RDX of the vCPUs after the first", o.VCPUs)
	}
	return measure.MeasureIGVM(a.igvm, o)
}
