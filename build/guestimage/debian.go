package guestimage

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// hostPackage is a Debian package of the build host's own suite that the image depends on.
type hostPackage struct {
	name string
	use  string
}

// The host packages whose contents end up in, or shape the bytes of, the guest image.
var hostPackages = []hostPackage{
	{"erofs-utils", "mkfs.erofs writes rootfs.img"},
	{"libseccomp-dev", "libseccomp.a linked into the agent"},
	{"libc6-dev", "static glibc linked into the agent"},
	{"gcc-12", "C compiler for the agent's cgo parts and the kernel"},
	{"binutils", "linker for the agent and the kernel"},
}

// hostPackageInfo returns the installed version of a host package and the SHA-256 of its
// .deb, downloading the .deb of exactly that version into cacheDir if needed.
func hostPackageInfo(ctx context.Context, cacheDir string, p hostPackage) (DebianPackage, error) {
	out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Version} ${Architecture}", p.name).Output()
	if err != nil {
		return DebianPackage{}, fmt.Errorf("%s is not installed (needed for: %s): run make setup", p.name, p.use)
	}
	version, arch, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	dir := filepath.Join(cacheDir, "host-debs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return DebianPackage{}, err
	}
	deb := filepath.Join(dir, fmt.Sprintf("%s_%s_%s.deb", p.name, strings.ReplaceAll(version, ":", "%3a"), arch))
	if _, err := os.Stat(deb); err != nil {
		cmd := exec.CommandContext(ctx, "apt-get", "download", "-qq", "-o", "APT::Sandbox::User=root", p.name+"="+version)
		cmd.Dir = dir
		if outp, err := cmd.CombinedOutput(); err != nil {
			return DebianPackage{}, fmt.Errorf("download %s %s to record its digest: %w\n%s", p.name, version, err, outp)
		}
	}
	_, sum, err := fileSHA256(deb)
	if err != nil {
		return DebianPackage{}, fmt.Errorf("hash the .deb of %s: %w (remove %s and retry)", p.name, err, deb)
	}
	return DebianPackage{Name: p.name, Version: version, SHA256: sum, Use: p.use}, nil
}

// pinnedPackages reads build/packages.lock: "suite package version sha256" lines.
func pinnedPackages(lockFile string, uses map[string]string) ([]DebianPackage, error) {
	f, err := os.Open(lockFile)
	if err != nil {
		return nil, fmt.Errorf("read package pins: %w", err)
	}
	defer f.Close()
	var pkgs []DebianPackage
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 4 {
			return nil, fmt.Errorf("%s:%d: want \"suite package version sha256\", got %q", lockFile, line, text)
		}
		use, ok := uses[fields[1]]
		if !ok {
			continue
		}
		pkgs = append(pkgs, DebianPackage{Suite: fields[0], Name: fields[1], Version: fields[2], SHA256: fields[3], Use: use})
	}
	return pkgs, sc.Err()
}
