package igvmboot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"confguest/measure"
	"confguest/measure/igvm"
)

// FakeKernel returns a minimal bzImage: setupSects setup sectors holding a boot protocol
// 2.15 setup header, then a protected-mode part of kernelSize bytes (a repeating pattern).
func fakeKernel(protocol uint16, kernelSize int, initSize uint32) []byte {
	const setupSects = 4
	b := make([]byte, (setupSects+1)*512+kernelSize)
	le := binary.LittleEndian
	b[0x1F1] = setupSects
	le.PutUint16(b[0x1FE:], 0xAA55)
	b[0x200] = 0xEB
	b[0x201] = 0x6A // header ends at 0x26C
	copy(b[0x202:], "HdrS")
	le.PutUint16(b[0x206:], protocol)
	b[0x211] = 0x01                     // LOADED_HIGH
	le.PutUint32(b[0x214:], 0x100000)   // code32_start
	le.PutUint32(b[0x22C:], 0x7FFFFFFF) // initrd_addr_max
	le.PutUint32(b[0x230:], 0x200000)   // kernel_alignment
	b[0x234] = 1                        // relocatable
	le.PutUint32(b[0x238:], 2048)       // cmdline_size
	le.PutUint64(b[0x258:], 0x1000000)  // pref_address
	le.PutUint32(b[0x260:], initSize)   // init_size
	le.PutUint32(b[0x268:], 0x12345678) // kernel_info_offset, copied as is
	for i := (setupSects + 1) * 512; i < len(b); i++ {
		b[i] = byte(i*7 + 1)
	}
	return b
}

func TestBuildLayout(t *testing.T) {
	kernel := fakeKernel(0x20F, 3*pageSize+100, 4<<20)
	initrd := bytes.Repeat([]byte("initrd!"), 1000)
	const cmdline = "console=ttyS0 confguest.root=abc123"
	opts := Options{MemoryMiB: 64, VCPUs: 2}
	out, err := Build(kernel, initrd, cmdline, opts)
	if err != nil {
		t.Fatalf("Build = %v", err)
	}
	again, err := Build(kernel, initrd, cmdline, opts)
	if err != nil || !bytes.Equal(out, again) {
		t.Fatalf("Build is not deterministic (err %v)", err)
	}
	f, err := igvm.Parse(out)
	if err != nil {
		t.Fatalf("Parse(Build()) = %v", err)
	}

	// Every page of RAM once, ascending, and nothing in 0xA0000-1 MiB.
	pages := map[uint64]igvm.PageData{}
	var order []uint64
	var vps []igvm.VPContext
	for _, h := range f.Headers {
		switch x := h.Body.(type) {
		case igvm.PageData:
			pages[x.GPA] = x
			order = append(order, x.GPA)
		case igvm.VPContext:
			vps = append(vps, x)
		case igvm.GuestPolicy:
			if x.Policy != 0x30000 {
				t.Errorf("guest policy = 0x%x, want 0x30000", x.Policy)
			}
		case igvm.SNPIDBlock, igvm.ParameterInsert, igvm.ParameterArea:
			t.Errorf("unexpected %v header", x.Type())
		}
	}
	wantPages := (0xA0000+(64<<20-1<<20))/pageSize - 1 // all RAM but the VMSA page
	if len(order) != wantPages {
		t.Errorf("%d pages, want %d", len(order), wantPages)
	}
	for i := 1; i < len(order); i++ {
		if order[i] <= order[i-1] {
			t.Fatalf("page %d at 0x%x follows 0x%x: not ascending", i, order[i], order[i-1])
		}
		if order[i] >= 0xA0000 && order[i] < 1<<20 {
			t.Fatalf("page at 0x%x in the legacy hole", order[i])
		}
	}
	content := func(gpa uint64) []byte {
		t.Helper()
		p, ok := pages[gpa]
		if !ok {
			t.Fatalf("no page at 0x%x", gpa)
		}
		c, err := f.PageContents(p)
		if err != nil {
			t.Fatal(err)
		}
		if c == nil {
			c = make([]byte, pageSize)
		}
		return c
	}
	if p := pages[0x5000]; p.DataType != igvm.DataCPUID || p.FileOffset != 0 {
		t.Errorf("page 0x5000 = %+v, want an empty CPUID page", p)
	}
	if p := pages[0x6000]; p.DataType != igvm.DataSecrets || p.FileOffset != 0 {
		t.Errorf("page 0x6000 = %+v, want an empty secrets page", p)
	}
	if c := content(0x3000); string(c[:len(cmdline)+1]) != cmdline+"\x00" {
		t.Errorf("command line page = %q, want %q and NUL", c[:len(cmdline)+1], cmdline)
	}

	// boot_params.
	bp := content(0x2000)
	le := binary.LittleEndian
	if !bytes.Equal(bp[0x1F1:0x210], kernel[0x1F1:0x210]) || le.Uint32(bp[0x268:]) != 0x12345678 {
		t.Errorf("boot_params setup header is not the kernel's")
	}
	initrdGPA := uint64(0x1000000 + 4<<20)
	for _, c := range []struct {
		name      string
		off, size int
		want      uint64
	}{
		{"type_of_loader", 0x210, 1, 0xFF},
		{"code32_start", 0x214, 4, 0x1000000},
		{"ramdisk_image", 0x218, 4, initrdGPA},
		{"ramdisk_size", 0x21C, 4, uint64(len(initrd))},
		{"cmd_line_ptr", 0x228, 4, 0x3000},
		{"setup_data", 0x250, 8, 0x4000},
		{"acpi_rsdp_addr", 0x070, 8, 0x8000},
		{"e820_entries", 0x1E8, 1, 5},
	} {
		var got uint64
		switch c.size {
		case 1:
			got = uint64(bp[c.off])
		case 4:
			got = uint64(le.Uint32(bp[c.off:]))
		case 8:
			got = le.Uint64(bp[c.off:])
		}
		if got != c.want {
			t.Errorf("boot_params.%s = 0x%x, want 0x%x", c.name, got, c.want)
		}
	}
	// e820 RAM must be exactly the normal/zero pages; reserved/ACPI pages must be pages too.
	var ramPages int
	for i := range int(bp[0x1E8]) {
		e := bp[0x2D0+20*i:]
		addr, size, typ := le.Uint64(e), le.Uint64(e[8:]), le.Uint32(e[16:])
		for gpa := addr; gpa < addr+size; gpa += pageSize {
			p, ok := pages[gpa]
			if !ok && !(typ == 2 && gpa == 0x7000) {
				t.Fatalf("e820 entry %d (type %d) covers 0x%x, which is no IGVM page", i, typ, gpa)
			}
			if typ == 1 {
				ramPages++
				if p.DataType != igvm.DataNormal {
					t.Errorf("e820 RAM page 0x%x has data type %d", gpa, p.DataType)
				}
			}
		}
	}
	if ramPages != len(order)-4 {
		t.Errorf("e820 lists %d RAM pages, want all %d pages but CPUID, secrets and 2 ACPI", ramPages, len(order)-4)
	}

	// CC blob.
	sd := content(0x4000)
	if le.Uint32(sd[8:]) != 7 || le.Uint32(sd[12:]) != 40 || le.Uint32(sd[16:]) != 0x45444D41 ||
		le.Uint64(sd[24:]) != 0x6000 || le.Uint64(sd[40:]) != 0x5000 {
		t.Errorf("setup_data = % x, want a SETUP_CC_BLOB with secrets 0x6000 and CPUID 0x5000", sd[:56])
	}

	// Kernel and initrd bytes.
	pm := kernel[5*512:]
	for off := 0; off < len(pm); off += pageSize {
		c := content(0x1000000 + uint64(off))
		n := min(pageSize, len(pm)-off)
		if !bytes.Equal(c[:n], pm[off:off+n]) || !isZero(c[n:]) {
			t.Errorf("kernel page at +0x%x differs", off)
		}
	}
	for off := 0; off < len(initrd); off += pageSize {
		c := content(initrdGPA + uint64(off))
		n := min(pageSize, len(initrd)-off)
		if !bytes.Equal(c[:n], initrd[off:off+n]) {
			t.Errorf("initrd page at +0x%x differs", off)
		}
	}

	// vCPU 0.
	if len(vps) != 1 || vps[0].VPIndex != 0 || vps[0].GPA != 0x7000 {
		t.Fatalf("VP contexts = %+v, want one for vCPU 0 at 0x7000", vps)
	}
	if _, ok := pages[0x7000]; ok {
		t.Errorf("the VMSA page 0x7000 is also a PAGE_DATA page")
	}
	raw, err := f.VMSA(vps[0])
	if err != nil {
		t.Fatal(err)
	}
	var v igvm.VMSA
	copy(v[:], raw)
	for _, c := range []struct {
		name      string
		got, want uint64
	}{
		{"cs.selector", uint64(v.Seg(igvm.SegCS).Selector), 0x10},
		{"cs.attrib", uint64(v.Seg(igvm.SegCS).Attrib), 0xC9B},
		{"ds.selector", uint64(v.Seg(igvm.SegDS).Selector), 0x18},
		{"ss.selector", uint64(v.Seg(igvm.SegSS).Selector), 0x18},
		{"es.limit", uint64(v.Seg(igvm.SegES).Limit), 0xFFFFFFFF},
		{"tr.selector", uint64(v.Seg(igvm.SegTR).Selector), 0x28},
		{"gdtr.base", v.Seg(igvm.SegGDTR).Base, 0x1000},
		{"gdtr.limit", uint64(v.Seg(igvm.SegGDTR).Limit), 0x2F},
		{"cr0", v.U64(igvm.VMSACR0), 1},
		{"cr3", v.U64(igvm.VMSACR3), 0},
		{"cr4", v.U64(igvm.VMSACR4), 0},
		{"rip", v.U64(igvm.VMSARIP), 0x1000000},
		{"rsi", v.U64(igvm.VMSARSI), 0x2000},
		{"rflags", v.U64(igvm.VMSARFLAGS), 2},
		{"sev_features", v.U64(igvm.VMSASEVFeatures), 1},
		{"xcr0", v.U64(igvm.VMSAXCR0), 1},
	} {
		if c.got != c.want {
			t.Errorf("VMSA %s = 0x%x, want 0x%x", c.name, c.got, c.want)
		}
	}
	g := content(0x1000)
	if le.Uint64(g[0x10:]) != 0x00CF9B000000FFFF || le.Uint64(g[0x18:]) != 0x00CF93000000FFFF {
		t.Errorf("GDT = % x, want flat code at 0x10 and flat data at 0x18", g[:48])
	}

	// The file measures under both rule sets.
	if _, err := measure.IGVM(f, measure.IGVMOptions{Rules: measure.RulesKVM, VCPUs: 2}); err != nil {
		t.Errorf("measure.IGVM(kvm) = %v", err)
	}
}

func TestBuildChangesDigest(t *testing.T) {
	kernel := fakeKernel(0x20F, pageSize, 2<<20)
	digest := func(cmdline string, initrd []byte) measure.Digest {
		t.Helper()
		out, err := Build(kernel, initrd, cmdline, Options{MemoryMiB: 64})
		if err != nil {
			t.Fatal(err)
		}
		d, err := measure.IGVMBytes(out, measure.IGVMOptions{Rules: measure.RulesKVM, VCPUs: 1})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	base := digest("root=a", []byte("x"))
	if digest("root=b", []byte("x")) == base {
		t.Error("changing the command line does not change the KVM digest")
	}
	if digest("root=a", []byte("y")) == base {
		t.Error("changing the initrd does not change the KVM digest")
	}
}

func TestBuildErrors(t *testing.T) {
	good := fakeKernel(0x20F, pageSize, 2<<20)
	tests := []struct {
		name    string
		kernel  []byte
		initrd  []byte
		cmdline string
		opts    Options
		want    error
	}{
		{"not a bzImage", make([]byte, 4096), nil, "", Options{}, ErrKernel},
		{"short kernel", good[:0x100], nil, "", Options{}, ErrKernel},
		{"protocol 2.13", fakeKernel(0x20D, pageSize, 2<<20), nil, "", Options{}, ErrKernel},
		{"init_size too small", fakeKernel(0x20F, 3*pageSize, pageSize), nil, "", Options{}, ErrKernel},
		{"command line too long", good, nil, string(bytes.Repeat([]byte("a"), 2048)), Options{}, ErrTooLarge},
		{"command line with NUL", good, nil, "a\x00b", Options{}, ErrOption},
		{"initrd beyond RAM", good, make([]byte, 64<<20), "", Options{MemoryMiB: 64}, ErrTooLarge},
		{"no vCPUs", good, nil, "", Options{VCPUs: -1}, ErrOption},
		{"too many vCPUs", good, nil, "", Options{VCPUs: MaxVCPUs + 1}, ErrOption},
		{"too little memory", good, nil, "", Options{MemoryMiB: 16}, ErrOption},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Build(tc.kernel, tc.initrd, tc.cmdline, tc.opts); !errors.Is(err, tc.want) {
				t.Errorf("Build(%s) = %v, want %v", tc.name, err, tc.want)
			}
		})
	}
}
