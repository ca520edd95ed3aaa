package launcher

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"confguest/hostside/vmm"
)

// pickAccel resolves the QEMU accelerator. With auto, KVM is used only if its probe guest
// runs in time (vmm.ProbeKVM) and this host boot has not already shown that KVM is
// unusable (a failed probe, or a guest that stalled under KVM, is remembered per boot).
func (s *Sandbox) pickAccel(ctx context.Context) vmm.Accel {
	a := s.opts.Accel
	if a != "" && a != vmm.AccelAuto {
		return a
	}
	if s.kvmHangs() {
		s.progress("KVM proved unusable earlier on this host boot; using TCG")
		return vmm.AccelTCG
	}
	got, err := vmm.ResolveAccel(ctx, vmm.AccelAuto, "/dev/kvm")
	if err != nil {
		s.progress("KVM not usable (%v); using TCG", err)
		if errors.Is(err, vmm.ErrKVMUnusable) {
			s.rememberKVMHangs() // the probe costs a second; this host boot's answer stands
		}
	}
	return got
}

func (s *Sandbox) cacheDir() string {
	if s.opts.CacheDir != "" {
		return s.opts.CacheDir
	}
	if d := os.Getenv("CONFGUEST_CACHE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".cache", "confguest")
}

// kvmMarker is the cache file recording that KVM stalls guests, keyed by the host's boot
// id so that a reboot (or another machine) probes afresh.
func (s *Sandbox) kvmMarker() string {
	dir := s.cacheDir()
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if dir == "" || err != nil {
		return ""
	}
	return filepath.Join(dir, "kvm-unusable-"+strings.TrimSpace(string(b)))
}

func (s *Sandbox) kvmHangs() bool {
	m := s.kvmMarker()
	if m == "" {
		return false
	}
	_, err := os.Stat(m)
	return err == nil
}

func (s *Sandbox) rememberKVMHangs() {
	if m := s.kvmMarker(); m != "" {
		os.MkdirAll(filepath.Dir(m), 0o755)
		os.WriteFile(m, []byte("KVM did not run guests usefully on this host boot; TCG is used\n"), 0o644)
	}
}

// findVhost returns vhost-device-vsock from PATH, else the copy build/debpin.sh unpacked into
// the cache (debs/vhost-device-vsock_<version>/usr/bin), else "" (an explicit
// vmm.WithVhostDeviceVsock in Options.QEMU, applied later, wins over both).
func (s *Sandbox) findVhost() string {
	if p, err := exec.LookPath("vhost-device-vsock"); err == nil {
		return p
	}
	m, _ := filepath.Glob(filepath.Join(s.cacheDir(), "debs", "vhost-device-vsock_*", "usr", "bin", "vhost-device-vsock"))
	if len(m) == 0 {
		return ""
	}
	sort.Strings(m)
	return m[len(m)-1]
}
