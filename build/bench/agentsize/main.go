// Command agentsize breaks a Go binary built without -s -w down by package: the bytes of
// machine code (.text), of read-only data (type descriptors, the GC and stack maps in
// go:func.*, named tables) and of the runtime's function table (.gopclntab: each function's
// name, its _func record and its pc-value tables) that each package brings. The stripped
// binary keeps .gopclntab and .rodata, so the columns are what a package costs the guest. In
// an externally linked binary go:func.* lies in .gopclntab and is counted there; type
// descriptors and string data have no symbols and stay in one unattributed .rodata row.
//
//	agentsize [-n 40] [-by package|module] BINARY
//	agentsize [-n 40] [-by package|module] -agent   (run in the repository)
//	agentsize [-n 40] [-by package|module] -pages FILE (-agent | BINARY)
//
// With -agent it builds the image's agent with its symbols (guestimage.BuildAgentWithSymbols:
// the image's tags and compiler flags) and breaks that down.
//
// With -pages it breaks down the pages of the binary the agent touched before it was ready
// instead: FILE holds the agent's "confguest-agent: startup pages:" console line from a
// boot with confguest.readahead_kb=0 (build/bench/boot.sh with PAGES=FILE writes it), a
// bitmap of the stripped /sbin/agent's pages in the page cache. The build with symbols has
// the same sections at the same file offsets, so the pages map to its sections, the tables
// of .gopclntab, and the packages of .text and .rodata symbols.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"confguest/build/guestimage"
)

func main() {
	fs := flag.NewFlagSet("agentsize", flag.ContinueOnError)
	n := fs.Int("n", 40, "rows to print (0: all)")
	by := fs.String("by", "package", "group by package or module")
	agent := fs.Bool("agent", false, "build the image's agent with symbols from the module in the current directory and break it down")
	pages := fs.String("pages", "", "break down the touched pages in this file (the agent's startup pages line) instead of the sizes")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if fs.NArg() != 1 && !*agent || fs.NArg() != 0 && *agent || (*by != "package" && *by != "module") {
		fmt.Fprintln(os.Stderr, "usage: agentsize [-n rows] [-by package|module] [-pages FILE] BINARY (built without -s -w) | -agent")
		os.Exit(2)
	}
	if err := mainErr(*agent, fs.Arg(0), *by, *n, *pages); err != nil {
		fmt.Fprintf(os.Stderr, "agentsize: %v\n", err)
		os.Exit(1)
	}
}

func mainErr(agent bool, path, by string, n int, pages string) error {
	if agent {
		dir, err := os.MkdirTemp("", "agentsize-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		path = filepath.Join(dir, "agent")
		if err := guestimage.BuildAgentWithSymbols(context.Background(), ".", path); err != nil {
			return err
		}
	}
	if pages != "" {
		p, err := readPages(pages)
		if err != nil {
			return err
		}
		pb, err := analyzePages(path, p)
		if err != nil {
			return err
		}
		printPages(os.Stdout, pb, by, n)
		return nil
	}
	return run(os.Stdout, path, by, n)
}

func run(w io.Writer, path, by string, n int) error {
	b, err := analyze(path)
	if err != nil {
		return err
	}
	rows := b.rows
	if by == "module" {
		rows = byModule(rows)
	}
	printRows(w, b, rows, n)
	return nil
}

// byModule merges package rows into module rows: the standard library stays per package
// family (runtime, net, crypto, ...), a third-party package goes under its module's path.
func byModule(rows map[string]*row) map[string]*row {
	out := map[string]*row{}
	for name, r := range rows {
		m := moduleOf(name)
		o := out[m]
		if o == nil {
			o = &row{}
			out[m] = o
		}
		o.add(r)
	}
	return out
}

func printRows(w io.Writer, b *breakdown, rows map[string]*row, n int) {
	names := make([]string, 0, len(rows))
	for k := range rows {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		ti, tj := rows[names[i]].total(), rows[names[j]].total()
		if ti != tj {
			return ti > tj
		}
		return names[i] < names[j]
	})
	fmt.Fprintf(w, "sections: .text %d, .rodata %d, .gopclntab %d, file %d bytes\n",
		b.textSize, b.rodataSize, b.pclnSize, b.fileSize)
	fmt.Fprintf(w, "%10s %10s %10s %10s  %s\n", "total", "text", "rodata", "pclntab", "package")
	var sum row
	for i, name := range names {
		r := rows[name]
		sum.add(r)
		if n > 0 && i >= n {
			continue
		}
		fmt.Fprintf(w, "%10d %10d %10d %10d  %s\n", r.total(), r.text, r.rodata, r.pcln, name)
	}
	if n > 0 && len(names) > n {
		fmt.Fprintf(w, "(%d more rows)\n", len(names)-n)
	}
	fmt.Fprintf(w, "%10d %10d %10d %10d  %s\n", sum.total(), sum.text, sum.rodata, sum.pcln, "sum of rows")
}
