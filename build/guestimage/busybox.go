package guestimage

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// BusyboxBinary is where Debian's busybox-static installs its static busybox.
const BusyboxBinary = "/bin/busybox"

// BusyboxRoot lays out a minimal container root filesystem in dir from a static busybox:
// the binary at /bin/busybox, one symlink per applet (from `busybox --list-full`), and the
// few files containers expect (/etc/passwd, /etc/group, mount points). File modes are set
// explicitly and no host path is followed, so the same busybox always gives the same tree;
// rootfs.Build then turns it into the same erofs + dm-verity disk. It is the demo and test
// container image.
func BusyboxRoot(ctx context.Context, busybox, dir string) error {
	if _, err := os.Stat(busybox); err != nil {
		return fmt.Errorf("%s: %w: install Debian's busybox-static (make setup)", busybox, err)
	}
	out, err := exec.CommandContext(ctx, busybox, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("list applets of %s: %w", busybox, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	for _, d := range []string{"", "bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "dev", "proc", "sys", "tmp", "root", "var", "run"} {
		p := filepath.Join(dir, d)
		if err := os.MkdirAll(p, 0o700); err != nil {
			return err
		}
		mode := os.FileMode(0o755)
		if d == "tmp" {
			mode = 0o777 | os.ModeSticky
		}
		if err := os.Chmod(p, mode); err != nil {
			return err
		}
	}
	if err := copyFile(busybox, filepath.Join(dir, "bin", "busybox")); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(dir, "bin", "busybox"), 0o755); err != nil {
		return err
	}
	applets := strings.Fields(string(out))
	sort.Strings(applets)
	for _, a := range applets {
		if a == "bin/busybox" || strings.Contains(a, "..") {
			continue
		}
		link := filepath.Join(dir, a)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			return err
		}
		if err := os.Symlink("/bin/busybox", link); err != nil {
			return fmt.Errorf("link applet %s: %w", a, err)
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
	}
	for _, n := range []string{"etc/group", "etc/passwd"} {
		p := filepath.Join(dir, n)
		if err := os.WriteFile(p, []byte(files[n]), 0o600); err != nil {
			return err
		}
		if err := os.Chmod(p, 0o644); err != nil {
			return err
		}
	}
	return nil
}
