package launcher

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"confguest/hostside/vmm"
)

func TestPickAccel(t *testing.T) {
	if _, err := os.Stat("/proc/sys/kernel/random/boot_id"); err != nil {
		t.Skip("no boot id on this system")
	}
	cache := t.TempDir()
	s := &Sandbox{opts: Options{CacheDir: cache, Accel: vmm.AccelKVM}}
	if got := s.pickAccel(context.Background()); got != vmm.AccelKVM {
		t.Errorf("pickAccel(explicit kvm) = %q, want kvm", got)
	}
	s.opts.Accel = vmm.AccelAuto
	s.rememberKVMHangs()
	m, _ := filepath.Glob(filepath.Join(cache, "kvm-unusable-*"))
	if len(m) != 1 {
		t.Fatalf("rememberKVMHangs wrote %q, want one marker keyed by boot id", m)
	}
	if got := s.pickAccel(context.Background()); got != vmm.AccelTCG {
		t.Errorf("pickAccel(auto) after a KVM stall on this boot = %q, want tcg", got)
	}
	os.WriteFile(filepath.Join(cache, "kvm-unusable-another-boot"), nil, 0o644)
	os.Remove(m[0])
	if s.kvmHangs() {
		t.Errorf("kvmHangs() = true with only another boot's marker, want false")
	}
}

func TestFindVhost(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("PATH", t.TempDir())
	s := &Sandbox{opts: Options{CacheDir: cache}}
	if got := s.findVhost(); got != "" {
		t.Errorf("findVhost() with an empty cache = %q, want none", got)
	}
	want := filepath.Join(cache, "debs", "vhost-device-vsock_0.3.0-2", "usr", "bin", "vhost-device-vsock")
	os.MkdirAll(filepath.Dir(want), 0o755)
	os.WriteFile(want, nil, 0o755)
	if got := s.findVhost(); got != want {
		t.Errorf("findVhost() = %q, want the cached copy %q", got, want)
	}
}
