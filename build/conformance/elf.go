package conformance

import (
	"debug/elf"
	"fmt"
	"os"
	"path"
	"path/filepath"
)

// libDirs are where Debian (amd64, merged /usr) keeps shared objects, relative to a root.
var libDirs = []string{"usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu", "usr/lib", "lib", "usr/lib64", "lib64"}

// imageLibDir is where an image built here holds the shared objects its programs load;
// /lib and /lib64 are symlinks into /usr as on Debian.
const imageLibDir = "usr/lib/x86_64-linux-gnu"

// dlopened are the shared objects a library loads at run time with dlopen, which no
// DT_NEEDED entry names: glibc loads libgcc_s for pthread_exit and thread cancellation (the
// reason Debian's libc6 depends on libgcc-s1); without it a program whose threads exit that
// way aborts ("libgcc_s.so.1 must be installed for pthread_exit to work"), as Apache's
// worker processes do.
var dlopened = map[string][]string{"libc.so.6": {"libgcc_s.so.1"}}

// addProgram adds the ELF program or shared object at src (a file under one of roots) to t
// at dst, with every shared object it needs, transitively, and its ELF interpreter. Each
// needed object is looked up in roots in order (the unpacked Debian packages first, then
// the host's "/"), so an image carries exactly the libraries its programs load.
func (t *tree) addProgram(dst, src string, roots []string) error {
	if err := t.addHostFile(dst, src, 0o755); err != nil {
		return err
	}
	return t.addNeeded(src, roots)
}

// addNeeded adds the shared objects and interpreter the ELF file src needs, transitively.
func (t *tree) addNeeded(src string, roots []string) error {
	f, err := elf.Open(src)
	if err != nil {
		return fmt.Errorf("read ELF %s: %w", src, err)
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("read the libraries %s needs: %w", src, err)
	}
	if interp := interpreter(f); interp != "" {
		host, err := findInRoots(interp, roots)
		if err != nil {
			return fmt.Errorf("%s: interpreter %s: %w", src, interp, err)
		}
		dst := path.Join("usr/lib64", path.Base(interp))
		if !t.has(dst) {
			if err := t.addHostFile(dst, host, 0o755); err != nil {
				return err
			}
		}
	}
	for i := 0; i < len(libs); i++ {
		soname := libs[i]
		libs = append(libs, dlopened[soname]...)
		dst := path.Join(imageLibDir, soname)
		if t.has(dst) {
			continue
		}
		host, err := findLib(soname, roots)
		if err != nil {
			return fmt.Errorf("%s needs %s: %w", src, soname, err)
		}
		if err := t.addHostFile(dst, host, 0o644); err != nil {
			return err
		}
		if err := t.addNeeded(host, roots); err != nil {
			return err
		}
	}
	return nil
}

// interpreter is the PT_INTERP path of f, or "" for a static program or a library.
func interpreter(f *elf.File) string {
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			return ""
		}
		for len(b) > 0 && b[len(b)-1] == 0 {
			b = b[:len(b)-1]
		}
		return string(b)
	}
	return ""
}

// findLib looks up the shared object soname in the library folders of roots.
func findLib(soname string, roots []string) (string, error) {
	for _, r := range roots {
		for _, d := range libDirs {
			p := filepath.Join(r, d, soname)
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("not found in %v: install or fetch the Debian package that ships it", roots)
}

// findInRoots finds the absolute path p (e.g. an ELF interpreter) under one of roots.
func findInRoots(p string, roots []string) (string, error) {
	for _, r := range roots {
		q := filepath.Join(r, p)
		if fi, err := os.Stat(q); err == nil && fi.Mode().IsRegular() {
			return q, nil
		}
	}
	return "", fmt.Errorf("not found in %v", roots)
}
