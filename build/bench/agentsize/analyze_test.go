package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestPackageOf(t *testing.T) {
	tests := []struct{ name, want string }{
		{"runtime.mallocgc", "runtime"},
		{"net/http.(*Request).Clone", "net/http"},
		{"github.com/opencontainers/runc/libcontainer.(*Container).Run", "github.com/opencontainers/runc/libcontainer"},
		{"google.golang.org/protobuf/internal/impl.fieldCoder", "google.golang.org/protobuf/internal/impl"},
		{"type:*net/http.Request", "net/http"},
		{"type:[]map[string]*os.File", "os"},
		{"go:itab.*os.File,io.Reader", "os"},
		{"slices.SortFunc[go.shape.[]string,go.shape.string]", "slices"},
		{"crypto/internal/fips140/sha3.keccakF1600.abi0", "crypto/internal/fips140/sha3"},
		{"type:.eq.github.com/opencontainers/runc/libcontainer/configs.Mount", "github.com/opencontainers/runc/libcontainer/configs"},
		{"slices.pdqsortCmpFunc[go.shape.struct { Name string }]", "slices"},
		{"printf_positional", "printf_positional"},
	}
	for _, tc := range tests {
		if got := packageOf(tc.name); got != tc.want {
			t.Errorf("packageOf(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestModuleOf(t *testing.T) {
	tests := []struct{ pkg, want string }{
		{"runtime", "std: runtime"},
		{"crypto/internal/fips140/sha3", "std: crypto"},
		{"vendor/golang.org/x/net/dns/dnsmessage", "std vendor: golang.org/x/net"},
		{"github.com/opencontainers/runc/libcontainer/specconv", "github.com/opencontainers/runc"},
		{"github.com/godbus/dbus/v5", "github.com/godbus/dbus/v5"},
		{"github.com/coreos/go-systemd/v22/dbus", "github.com/coreos/go-systemd/v22"},
		{"google.golang.org/protobuf/internal/impl", "google.golang.org/protobuf"},
		{"golang.org/x/sys/unix", "golang.org/x/sys"},
		{"confguest/agent/server", "confguest (this module)"},
		{cCode, cCode},
	}
	for _, tc := range tests {
		if got := moduleOf(tc.pkg); got != tc.want {
			t.Errorf("moduleOf(%q) = %q, want %q", tc.pkg, got, tc.want)
		}
	}
}

// TestAnalyzeSelf breaks this command's own binary down: the rows must account for the sections they
// split, and the runtime and this package must have code and function-table entries.
func TestAnalyzeSelf(t *testing.T) {
	// go test links its binary with -s -w: build this command as the agent's breakdown does.
	exe := filepath.Join(t.TempDir(), "agentsize")
	cmd := exec.Command("go", "build", "-o", exe, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	b, err := analyze(exe)
	if err != nil {
		t.Fatalf("analyze(%s) = %v", exe, err)
	}
	var sum row
	for _, r := range b.rows {
		sum.add(r)
	}
	if sum.rodata != b.rodataSize {
		t.Errorf("rodata rows sum to %d, want the .rodata section's %d", sum.rodata, b.rodataSize)
	}
	// .gopclntab: every byte but the padding between its tables.
	if sum.pcln > b.pclnSize || sum.pcln < b.pclnSize*99/100 {
		t.Errorf("pclntab rows sum to %d, want at most and nearly the section's %d", sum.pcln, b.pclnSize)
	}
	if sum.text > b.textSize || sum.text < b.textSize*9/10 {
		t.Errorf("text rows sum to %d, want at most and nearly the section's %d", sum.text, b.textSize)
	}
	for _, pkg := range []string{"runtime", "main", "debug/dwarf"} {
		if r := b.rows[pkg]; r == nil || r.text == 0 || r.pcln == 0 {
			t.Errorf("row %q = %+v, want text and pclntab bytes", pkg, r)
		}
	}
	var out bytes.Buffer
	printRows(&out, b, byModule(b.rows), 5)
	if got := out.String(); !strings.Contains(got, "std: runtime") || !strings.Contains(got, "sum of rows") {
		t.Errorf("printRows(by module) =\n%s\nwant a std: runtime row and the sum", got)
	}
}
