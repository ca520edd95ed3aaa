package main

import (
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strings"
)

// row is what one package (or module) contributes.
type row struct{ text, rodata, pcln uint64 }

func (r *row) total() uint64 { return r.text + r.rodata + r.pcln }

func (r *row) add(o *row) {
	r.text += o.text
	r.rodata += o.rodata
	r.pcln += o.pcln
}

type breakdown struct {
	rows                                     map[string]*row
	textSize, rodataSize, pclnSize, fileSize uint64
}

func (b *breakdown) row(name string) *row {
	r := b.rows[name]
	if r == nil {
		r = &row{}
		b.rows[name] = r
	}
	return r
}

// Names of rows that hold what no package owns.
const (
	cCode          = "(no Go package: C code, linker-made symbols)"
	rodataOther    = "(rodata without a symbol: type descriptors, strings)"
	gofuncShared   = "(go:func.* not attributed)"
	pclnShared     = "(pclntab: header, file and CU tables, findfunctab)"
	funcdataSymbol = "go:func.*"
)

func analyze(path string) (*breakdown, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	g, err := readGoELF(f, path)
	if err != nil {
		return nil, err
	}
	syms, text, rodata, pcln, pkgOf := g.syms, g.text, g.rodata, g.pcln, g.pkgOf
	b := &breakdown{rows: map[string]*row{}, textSize: text.Size, rodataSize: rodata.Size, pclnSize: pcln.Size, fileSize: uint64(st.Size())}
	in := func(sec *elf.Section, s elf.Symbol) bool { return s.Value >= sec.Addr && s.Value < sec.Addr+sec.Size }
	var gofunc elf.Symbol
	var rodataSeen uint64
	// Symbols are placed by address: an external link puts go:func.* inside .gopclntab, and
	// type descriptors and strings have no symbols of their own.
	for _, s := range syms {
		switch {
		case s.Name == funcdataSymbol:
			gofunc = s // split by function with the function table
		case s.Size == 0:
		case in(text, s):
			b.row(pkgOf(s.Name)).text += s.Size
		case in(rodata, s):
			rodataSeen += s.Size
			b.row(pkgOf(s.Name)).rodata += s.Size
		case in(pcln, s) && goLinkerTable[s.Name]:
			b.row(pclnShared).pcln += s.Size
		}
	}
	if gofunc.Value == 0 || !in(pcln, gofunc) {
		return nil, fmt.Errorf("%s: no go:func.* symbol inside .gopclntab", path)
	}
	if rodataSeen < rodata.Size {
		b.row(rodataOther).rodata += rodata.Size - rodataSeen
	}
	data, err := pcln.Data()
	if err != nil {
		return nil, fmt.Errorf("%s: read .gopclntab: %w", path, err)
	}
	if err := b.addPclntab(data[:gofunc.Value-pcln.Addr], gofunc, pkgOf); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// goELF is what both breakdowns read of a Go binary built without -s -w.
type goELF struct {
	syms               []elf.Symbol
	text, rodata, pcln *elf.Section
	pkgOf              func(symbol string) string // package, or cCode
}

func readGoELF(f *elf.File, path string) (*goELF, error) {
	syms, err := f.Symbols()
	if err != nil {
		return nil, fmt.Errorf("%s: read symbols (build without -s -w): %w", path, err)
	}
	goPkgs, err := goPackages(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	text, rodata, pcln := f.Section(".text"), f.Section(".rodata"), f.Section(".gopclntab")
	if text == nil || rodata == nil || pcln == nil {
		return nil, fmt.Errorf("%s: not a Go ELF binary (.text, .rodata or .gopclntab missing)", path)
	}
	pkgOf := func(name string) string {
		p := packageOf(name)
		// A package whose code is only generic instantiations (slices) or generated
		// functions (type:.eq.*) has no compile unit; C names have no path, brackets or
		// "type:" (glibc's local names look like "open_path.isra.0").
		if goPkgs[p] || strings.ContainsAny(name, "/[") || strings.HasPrefix(name, "type:") {
			return p
		}
		return cCode
	}
	return &goELF{syms: syms, text: text, rodata: rodata, pcln: pcln, pkgOf: pkgOf}, nil
}

// goLinkerTable are runtime symbols the linker builds for the whole program.
var goLinkerTable = map[string]bool{"runtime.findfunctab": true}

// goPackages lists the Go packages linked into the binary: the DWARF compile units of Go code
// are named by import path (C objects are named by file, and static glibc has none).
func goPackages(f *elf.File) (map[string]bool, error) {
	d, err := f.DWARF()
	if err != nil {
		return nil, fmt.Errorf("read DWARF (build without -w): %w", err)
	}
	pkgs := map[string]bool{}
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			return nil, fmt.Errorf("read DWARF: %w", err)
		}
		if e == nil {
			return pkgs, nil
		}
		if e.Tag == dwarf.TagCompileUnit {
			if lang, ok := e.Val(dwarf.AttrLanguage).(int64); ok && lang == 0x16 { // DW_LANG_Go
				if name, ok := e.Val(dwarf.AttrName).(string); ok {
					pkgs[name] = true
				}
			}
		}
		r.SkipChildren()
	}
}

// packageOf returns the import path a Go symbol belongs to: "type:*net/http.Request" and
// "net/http.(*Request).Clone" both give "net/http"; "go:itab.*os.File,io.Reader" gives "os".
func packageOf(name string) string {
	s := strings.TrimPrefix(name, "type:")
	s = strings.TrimPrefix(s, ".eq.") // generated equality and hash functions of a type
	s = strings.TrimPrefix(s, ".hash.")
	s = strings.TrimPrefix(s, "go:itab.")
	for {
		t := strings.TrimLeft(s, "*[]0123456789")
		if k, ok := strings.CutPrefix(t, "map["); ok { // a map's row is its element's
			if _, v, ok := strings.Cut(k, "]"); ok {
				t = v
			}
		}
		for _, p := range []string{"chan ", "<-chan ", "chan<- ", "noalg."} {
			t = strings.TrimPrefix(t, p)
		}
		if t == s {
			break
		}
		s = t
	}
	if i := strings.IndexAny(s, "[(,"); i >= 0 {
		s = s[:i]
	}
	slash := strings.LastIndex(s, "/")
	dot := strings.Index(s[slash+1:], ".")
	if dot < 0 {
		return s
	}
	return s[:slash+1+dot]
}

// moduleOf maps an import path to its module, or the standard library's top-level family.
func moduleOf(pkg string) string {
	if strings.HasPrefix(pkg, "(") {
		return pkg
	}
	parts := strings.Split(pkg, "/")
	if parts[0] == "confguest" {
		return "confguest (this module)"
	}
	if !strings.Contains(parts[0], ".") {
		if parts[0] == "vendor" && len(parts) > 1 {
			return "std vendor: " + strings.Join(parts[1:min(len(parts), 4)], "/")
		}
		return "std: " + parts[0]
	}
	n := 3
	switch {
	case parts[0] == "golang.org" || parts[0] == "google.golang.org" || parts[0] == "go.uber.org":
		n = 3
		if parts[0] == "google.golang.org" {
			n = 2
		}
	case len(parts) > 3 && (parts[3] == "v2" || parts[3] == "v3" || parts[3] == "v5" || parts[3] == "v22"):
		n = 4
	}
	if len(parts) < n {
		n = len(parts)
	}
	return strings.Join(parts[:n], "/")
}

// addPclntab attributes .gopclntab to packages: per function its functab entry, its _func
// record with the pcdata and funcdata offsets, its name, and the pc-value tables and go:func.*
// data (GC and stack maps) it is the first to use (the linker shares equal tables).
func (b *breakdown) addPclntab(data []byte, gofunc elf.Symbol, pkgOf func(string) string) error {
	le := binary.LittleEndian
	if len(data) < 72 || le.Uint32(data) != 0xfffffff1 || data[7] != 8 {
		return fmt.Errorf(".gopclntab: not a Go 1.20+ 64-bit table")
	}
	nfunc := le.Uint64(data[8:])
	nameTab, pcTab, funcTab := data[le.Uint64(data[32:]):], data[le.Uint64(data[56:]):], data[le.Uint64(data[64:]):]
	seenPC := map[uint32]bool{0: true}
	type owner struct {
		off uint32
		pkg string
	}
	var funcdata []owner
	seenFD := map[uint32]bool{}
	var attributed uint64
	for i := uint64(0); i < nfunc; i++ {
		fo := le.Uint32(funcTab[i*8+4:])
		fn := funcTab[fo:]
		nameOff := le.Uint32(fn[4:])
		end := strings.IndexByte(string(nameTab[nameOff:min(int(nameOff)+4096, len(nameTab))]), 0)
		name := string(nameTab[nameOff : int(nameOff)+end])
		npc, nfd := le.Uint32(fn[28:]), uint32(fn[43])
		r := b.row(pkgOf(name))
		n := uint64(8 + 44 + 4*(npc+nfd) + uint32(end) + 1)
		tables := []uint32{le.Uint32(fn[16:]), le.Uint32(fn[20:]), le.Uint32(fn[24:])}
		for j := uint32(0); j < npc; j++ {
			tables = append(tables, le.Uint32(fn[44+4*j:]))
		}
		for _, off := range tables {
			if seenPC[off] {
				continue
			}
			seenPC[off] = true
			n += pcTableLen(pcTab[off:])
		}
		r.pcln += n
		attributed += n
		for j := uint32(0); j < nfd; j++ {
			off := le.Uint32(fn[44+4*(npc+j):])
			if off != ^uint32(0) && !seenFD[off] {
				seenFD[off] = true
				funcdata = append(funcdata, owner{off, pkgOf(name)})
			}
		}
	}
	if uint64(len(data)) > attributed {
		b.row(pclnShared).pcln += uint64(len(data)) - attributed
	}
	// Each funcdata runs to the next one's start (they are laid out in order of use).
	offs := make([]uint32, 0, len(funcdata))
	for _, o := range funcdata {
		offs = append(offs, o.off)
	}
	slices.Sort(offs)
	var fdSum uint64
	for _, o := range funcdata {
		i, _ := slices.BinarySearch(offs, o.off)
		next := uint32(gofunc.Size)
		if i+1 < len(offs) {
			next = offs[i+1]
		}
		if next > o.off {
			b.row(o.pkg).pcln += uint64(next - o.off)
			fdSum += uint64(next - o.off)
		}
	}
	if gofunc.Size > fdSum {
		b.row(gofuncShared).pcln += gofunc.Size - fdSum
	}
	return nil
}

// pcTableLen returns the encoded length of one pc-value table: pairs of a zig-zag value delta
// and a pc delta, both uvarints, ended by a zero value delta.
func pcTableLen(p []byte) uint64 {
	n := 0
	for first := true; n < len(p); first = false {
		v, k := binary.Uvarint(p[n:])
		if k <= 0 {
			return uint64(len(p))
		}
		n += k
		if v == 0 && !first {
			return uint64(n)
		}
		_, k = binary.Uvarint(p[n:])
		if k <= 0 {
			return uint64(len(p))
		}
		n += k
	}
	return uint64(n)
}
