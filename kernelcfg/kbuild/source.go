package kbuild

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Source is an unpacked Debian kernel source package, as build/debfetch.sh leaves it: the
// directory holds usr/src/<name>.tar.xz and <dir>.info beside it reads "name version sha256".
type Source struct {
	Package   string // Debian package name, e.g. linux-source-6.12
	Version   string // Debian version, e.g. 6.12.117-1
	DebSHA256 string // sha256 of the .deb, as pinned
	Tarball   string // path of the kernel source tarball inside the package
}

// FetchSource runs the pin script (build/debpin.sh) for pkg and reads what it unpacked.
func FetchSource(ctx context.Context, debpin, pkg string) (Source, error) {
	if _, err := os.Stat(debpin); err != nil {
		return Source{}, fmt.Errorf("fetching %s: %w (run from the repository root, or pass -source DIR)", pkg, err)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, debpin, pkg)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return Source{}, fmt.Errorf("fetching %s with %s: %w: %s", pkg, debpin, err, strings.TrimSpace(stderr.String()))
	}
	return ReadSource(strings.TrimSpace(string(out)))
}

// ReadSource describes the unpacked package in dir from dir.info and finds its tarball.
func ReadSource(dir string) (Source, error) {
	dir = filepath.Clean(dir)
	info, err := os.ReadFile(dir + ".info")
	if err != nil {
		return Source{}, fmt.Errorf("reading the package description of %s: %w (fetch it with build/debpin.sh)", dir, err)
	}
	f := strings.Fields(string(info))
	if len(f) != 3 || len(f[2]) != 64 {
		return Source{}, fmt.Errorf("%s.info: %q is not \"name version sha256\": fetch the package again with build/debpin.sh", dir, strings.TrimSpace(string(info)))
	}
	tars, err := filepath.Glob(filepath.Join(dir, "usr/src/linux-source-*.tar.xz"))
	if err != nil {
		return Source{}, fmt.Errorf("looking for the kernel tarball in %s: %w", dir, err)
	}
	if len(tars) != 1 {
		return Source{}, fmt.Errorf("%s: want one usr/src/linux-source-*.tar.xz, found %d: is it a linux-source package?", dir, len(tars))
	}
	return Source{Package: f[0], Version: f[1], DebSHA256: f[2], Tarball: tars[0]}, nil
}

// unpack extracts the tarball into dest (without its top directory) unless dest already
// holds a complete unpack. It extracts into a temporary sibling and renames, so an
// interrupted unpack is never taken for a complete one.
func unpack(ctx context.Context, tarball, dest string, log *os.File) error {
	if _, err := os.Stat(filepath.Join(dest, "Makefile")); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return fmt.Errorf("unpacking kernel source: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dest), ".unpack-")
	if err != nil {
		return fmt.Errorf("unpacking kernel source: %w", err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "tar", "-xJf", tarball, "-C", tmp, "--strip-components=1")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("unpacking %s: %w", tarball, err)
	}
	if err := os.Rename(tmp, dest); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("unpacking kernel source: %w", err)
	}
	return nil
}
