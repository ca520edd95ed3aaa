package main

import (
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/bits"
	"os"
	"sort"
	"strings"
)

const pageSize = 4096

// pagesPrefix starts the agent's console line with its page bitmap (agent/cmd/agent/startup.go).
const pagesPrefix = "confguest-agent: startup pages: "

// pageSet is a bitmap of a file's pages: page i (file offset i*4096) is bit i%8 of byte i/8.
type pageSet []byte

func (p pageSet) has(page uint64) bool {
	return page/8 < uint64(len(p)) && p[page/8]&(1<<(page%8)) != 0
}

func (p pageSet) count() int {
	n := 0
	for _, b := range p {
		n += bits.OnesCount8(b)
	}
	return n
}

// overlap returns the bytes of [off, off+size) that lie in pages of p.
func (p pageSet) overlap(off, size uint64) uint64 {
	var n uint64
	for end := off + size; off < end; {
		page := off / pageSize
		next := min((page+1)*pageSize, end)
		if p.has(page) {
			n += next - off
		}
		off = next
	}
	return n
}

// readPages reads a page bitmap: the agent's "startup pages" console line (the first such
// line in the file) or the bare hex.
func readPages(path string) (pageSet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := string(b)
	if i := strings.Index(s, pagesPrefix); i >= 0 {
		s = s[i+len(pagesPrefix):]
	}
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	p, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(p) == 0 {
		return nil, fmt.Errorf("%s: no page bitmap (the agent's %q console line, or its hex): %v", path, strings.TrimSpace(pagesPrefix), err)
	}
	return p, nil
}

// pagesRow is one line of the breakdown: bytes in the binary, bytes of them on touched pages.
type pagesRow struct{ size, touched uint64 }

// pagesBreakdown maps touched pages of a stripped binary to the sections and packages of the
// same build with symbols: the stripped agent and its build with symbols have the same
// allocated sections at the same file offsets (only symbols and DWARF, which come after
// them, differ), so file offsets carry over.
type pagesBreakdown struct {
	pages    int
	sections []namedRow // in file order
	text     map[string]*pagesRow
	rodata   map[string]*pagesRow
	pcln     []namedRow // .gopclntab's tables
}

type namedRow struct {
	name string
	pagesRow
}

func analyzePages(path string, p pageSet) (*pagesBreakdown, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	g, err := readGoELF(f, path)
	if err != nil {
		return nil, err
	}
	syms, text, rodata, pcln, pkgOf := g.syms, g.text, g.rodata, g.pcln, g.pkgOf
	pb := &pagesBreakdown{pages: p.count(), text: map[string]*pagesRow{}, rodata: map[string]*pagesRow{}}
	var inSections uint64
	var fileEnd uint64
	for _, s := range f.Sections {
		if s.Flags&elf.SHF_ALLOC == 0 || s.Type == elf.SHT_NOBITS || s.Size == 0 {
			continue
		}
		fileEnd = max(fileEnd, s.Offset+s.Size)
		r := namedRow{s.Name, pagesRow{s.Size, p.overlap(s.Offset, s.Size)}}
		inSections += r.touched
		pb.sections = append(pb.sections, r)
	}
	if need := (fileEnd + pageSize - 1) / pageSize; uint64(len(p))*8 < need {
		return nil, fmt.Errorf("the bitmap covers %d pages, the sections of %s end in page %d: not the same build", len(p)*8, path, need)
	}
	pb.sections = append(pb.sections, namedRow{"(ELF headers, padding between sections)", pagesRow{fileEnd - sumSize(pb.sections), uint64(pb.pages)*pageSize - inSections}})

	fileOff := func(sec *elf.Section, addr uint64) uint64 { return sec.Offset + addr - sec.Addr }
	in := func(sec *elf.Section, s elf.Symbol) bool { return s.Value >= sec.Addr && s.Value < sec.Addr+sec.Size }
	add := func(m map[string]*pagesRow, name string, size, touched uint64) {
		r := m[name]
		if r == nil {
			r = &pagesRow{}
			m[name] = r
		}
		r.size += size
		r.touched += touched
	}
	var named, namedTouched uint64
	var gofunc elf.Symbol
	for _, s := range syms {
		switch {
		case s.Name == funcdataSymbol:
			gofunc = s
		case s.Size == 0:
		case in(text, s):
			add(pb.text, pkgOf(s.Name), s.Size, p.overlap(fileOff(text, s.Value), s.Size))
		case in(rodata, s):
			t := p.overlap(fileOff(rodata, s.Value), s.Size)
			named += s.Size
			namedTouched += t
			add(pb.rodata, pkgOf(s.Name), s.Size, t)
		}
	}
	add(pb.rodata, rodataOther, rodata.Size-named, p.overlap(rodata.Offset, rodata.Size)-namedTouched)
	if gofunc.Value == 0 || !in(pcln, gofunc) {
		return nil, fmt.Errorf("%s: no go:func.* symbol inside .gopclntab", path)
	}
	data, err := pcln.Data()
	if err != nil {
		return nil, fmt.Errorf("%s: read .gopclntab: %w", path, err)
	}
	pb.pcln, err = pclnTables(data, pcln.Offset, gofunc.Value-pcln.Addr, gofunc.Size, p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pb, nil
}

func sumSize(rows []namedRow) uint64 {
	var n uint64
	for _, r := range rows {
		n += r.size
	}
	return n
}

// pclnTables splits .gopclntab (at file offset off) into the tables its Go 1.20+ header
// names, in the order the linker writes them, then go:func.* (at gofuncOff, gofuncSize
// bytes, inside the section in an external link) and what follows it.
func pclnTables(data []byte, off, gofuncOff, gofuncSize uint64, p pageSet) ([]namedRow, error) {
	le := binary.LittleEndian
	if len(data) < 72 || le.Uint32(data) != 0xfffffff1 || data[7] != 8 {
		return nil, fmt.Errorf(".gopclntab: not a Go 1.20+ 64-bit table")
	}
	starts := []struct {
		name string
		at   uint64
	}{
		{"header", 0},
		{"function names (funcnametab)", le.Uint64(data[32:])},
		{"compile-unit file index (cutab)", le.Uint64(data[40:])},
		{"file names (filetab)", le.Uint64(data[48:])},
		{"pc-value tables (pctab)", le.Uint64(data[56:])},
		{"function table and _func records (functab)", le.Uint64(data[64:])},
		{"GC and stack maps (go:func.*)", gofuncOff},
		{"after go:func.*", gofuncOff + gofuncSize},
	}
	var rows []namedRow
	for i, s := range starts {
		end := uint64(len(data))
		if i+1 < len(starts) {
			end = starts[i+1].at
		}
		if end < s.at || end > uint64(len(data)) {
			return nil, fmt.Errorf(".gopclntab: table %q at %d ends at %d, outside the %d-byte section", s.name, s.at, end, len(data))
		}
		if end > s.at {
			rows = append(rows, namedRow{s.name, pagesRow{end - s.at, p.overlap(off+s.at, end-s.at)}})
		}
	}
	return rows, nil
}

func printPages(w io.Writer, pb *pagesBreakdown, by string, n int) {
	fmt.Fprintf(w, "touched: %d pages (%d KiB); KiB of each row's bytes that lie on touched pages\n\n", pb.pages, pb.pages*pageSize/1024)
	fmt.Fprintf(w, "%-48s %10s %10s %6s\n", "section", "KiB", "touched", "%")
	printNamed(w, pb.sections)
	fmt.Fprintf(w, "\n%-48s %10s %10s %6s\n", ".gopclntab table", "KiB", "touched", "%")
	printNamed(w, pb.pcln)
	for _, part := range []struct {
		name string
		m    map[string]*pagesRow
	}{{".text", pb.text}, {".rodata", pb.rodata}} {
		m := part.m
		if by == "module" {
			m = map[string]*pagesRow{}
			for k, r := range part.m {
				o := m[moduleOf(k)]
				if o == nil {
					o = &pagesRow{}
					m[moduleOf(k)] = o
				}
				o.size += r.size
				o.touched += r.touched
			}
		}
		fmt.Fprintf(w, "\n%-48s %10s %10s %6s  (by %s, most touched first)\n", part.name, "KiB", "touched", "%", by)
		names := make([]string, 0, len(m))
		for k := range m {
			names = append(names, k)
		}
		sort.Slice(names, func(i, j int) bool {
			if m[names[i]].touched != m[names[j]].touched {
				return m[names[i]].touched > m[names[j]].touched
			}
			return names[i] < names[j]
		})
		var sum pagesRow
		for i, k := range names {
			sum.size += m[k].size
			sum.touched += m[k].touched
			if n == 0 || i < n {
				printRow(w, k, *m[k])
			}
		}
		if n > 0 && len(names) > n {
			fmt.Fprintf(w, "(%d more rows)\n", len(names)-n)
		}
		printRow(w, "sum of rows", sum)
	}
}

func printNamed(w io.Writer, rows []namedRow) {
	var sum pagesRow
	for _, r := range rows {
		printRow(w, r.name, r.pagesRow)
		sum.size += r.size
		sum.touched += r.touched
	}
	printRow(w, "sum", sum)
}

func printRow(w io.Writer, name string, r pagesRow) {
	pct := 0.0
	if r.size > 0 {
		pct = 100 * float64(r.touched) / float64(r.size)
	}
	fmt.Fprintf(w, "%-48s %10.1f %10.1f %6.1f\n", name, float64(r.size)/1024, float64(r.touched)/1024, pct)
}
