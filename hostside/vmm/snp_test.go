package vmm

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// snpParamFile writes a fake kvm_amd sev_snp parameter and returns its path.
func snpParamFile(t *testing.T, value string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sev_snp")
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestProbeSNP(t *testing.T) {
	tests := []struct {
		name    string
		param   func(t *testing.T) string
		wantErr string // "" for SNP present
	}{
		{"Y", func(t *testing.T) string { return snpParamFile(t, "Y\n") }, ""},
		{"1", func(t *testing.T) string { return snpParamFile(t, "1\n") }, ""},
		{"N", func(t *testing.T) string { return snpParamFile(t, "N\n") }, `: "N")`},
		{"0", func(t *testing.T) string { return snpParamFile(t, "0") }, `: "0")`},
		{"missing", func(t *testing.T) string { return filepath.Join(t.TempDir(), "sev_snp") }, ": not present"},
		{"unreadable", func(t *testing.T) string { return t.TempDir() }, "is a directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.param(t)
			err := ProbeSNP(p)
			if tc.wantErr == "" {
				if err != nil {
					t.Errorf("ProbeSNP(%q) = %v, want nil", p, err)
				}
				return
			}
			if !errors.Is(err, ErrNoSNP) || !strings.Contains(err.Error(), tc.wantErr) ||
				!strings.HasPrefix(err.Error(), "no SEV-SNP on this host ("+p) || !strings.Contains(err.Error(), "run without --snp") {
				t.Errorf("ProbeSNP(%q) = %v, want ErrNoSNP naming the file and %q and the fix", p, err, tc.wantErr)
			}
		})
	}
}

func snpTestConfig(dir string) Config {
	return Config{
		Kernel: "/img/bzImage", Initramfs: "/img/initramfs.cpio.gz", Cmdline: "console=ttyS0 confguest.roothash=ab",
		HostData: strings.Repeat("0f", 32), SEVSNP: true,
		CPUs: 1, MemoryMiB: 512, RunDir: dir,
		Disks: []Disk{{Path: "/img/rootfs.img", Serial: "rootfs", ReadOnly: true}, {Path: "/run/cg/ctr0.img", Serial: "ctr0", ReadOnly: true}},
	}
}

func TestQEMUSNPArgs(t *testing.T) {
	hd := strings.Repeat("0f", 32)
	hdBytes, _ := hex.DecodeString(hd)
	launch := SNPLaunch{OVMF: "/fw/OVMF.amdsev.fd", CPUModel: "EPYC-v4", Policy: DefaultSNPPolicy, CBitPos: 51, ReducedPhysBits: 1}
	const iommu = ",disable-legacy=on,iommu_platform=on"
	full := []string{
		"-name", "confguest",
		"-machine", "q35,confidential-guest-support=sev0,memory-backend=mem",
		"-accel", "kvm",
		"-cpu", "EPYC-v4",
		"-object", "sev-snp-guest,id=sev0,policy=0x30000,cbitpos=51,reduced-phys-bits=1,kernel-hashes=on,host-data=" + base64.StdEncoding.EncodeToString(hdBytes),
		"-bios", "/fw/OVMF.amdsev.fd",
		"-m", "512M",
		"-smp", "1",
		"-nodefaults", "-no-user-config", "-no-reboot", "-display", "none",
		"-object", "memory-backend-memfd,id=mem,size=512M,share=on",
		"-chardev", "socket,id=vsock,path=/run/cg/vhost.sock",
		"-device", "vhost-user-vsock-pci,chardev=vsock" + iommu,
		"-device", "virtio-rng-pci" + iommu,
		"-kernel", "/img/bzImage",
		"-initrd", "/img/initramfs.cpio.gz",
		"-append", "console=ttyS0 confguest.roothash=ab",
		"-drive", "file=/img/rootfs.img,if=none,id=disk0,format=raw,readonly=on",
		"-device", "virtio-blk-pci,drive=disk0,serial=rootfs" + iommu,
		"-drive", "file=/run/cg/ctr0.img,if=none,id=disk1,format=raw,readonly=on",
		"-device", "virtio-blk-pci,drive=disk1,serial=ctr0" + iommu,
		"-serial", "file:/run/cg/console.log",
		"-qmp", "unix:/run/cg/qmp.sock,server=on,wait=off",
	}
	for i := range HotplugPorts { // each checked on its own below
		full = append(full, "-device", fmt.Sprintf("pcie-root-port,id=hp%d,bus=pcie.0,chassis=%d,io-reserve=0", i, i+1))
	}
	tests := []struct {
		name     string
		change   func(*Config, *SNPLaunch)
		want     []string   // the whole argv, when set
		wantRuns [][]string // runs that must appear
		wantErr  string
	}{
		{name: "default launch", change: func(*Config, *SNPLaunch) {}, want: full},
		{
			name:     "two vCPUs, 1 GiB, other policy and C-bit",
			change:   func(c *Config, l *SNPLaunch) { c.CPUs, c.MemoryMiB, l.Policy, l.CBitPos = 2, 1024, 0xb0000, 47 },
			wantRuns: [][]string{{"-smp", "2"}, {"-m", "1024M"}, {"-object", "memory-backend-memfd,id=mem,size=1024M,share=on"}},
		},
		{name: "no OVMF", change: func(_ *Config, l *SNPLaunch) { l.OVMF = "" }, wantErr: "no OVMF firmware given"},
		{name: "no kernel", change: func(c *Config, _ *SNPLaunch) { c.Kernel = "" }, wantErr: "no kernel given"},
		{name: "short host data", change: func(c *Config, _ *SNPLaunch) { c.HostData = "abcd" }, wantErr: "want 64 hex digits"},
		{name: "non-hex host data", change: func(c *Config, _ *SNPLaunch) { c.HostData = strings.Repeat("zz", 32) }, wantErr: "want 64 hex digits"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, l := snpTestConfig("/run/cg"), launch
			tc.change(&cfg, &l)
			args, err := qemuSNPArgs(cfg, l)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("qemuSNPArgs() = %v, want error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("qemuSNPArgs() = %v", err)
			}
			if tc.want != nil && !slices.Equal(args, tc.want) {
				t.Errorf("qemuSNPArgs() =\n%q\nwant\n%q", args, tc.want)
			}
			for _, r := range tc.wantRuns {
				if !containsRun(args, r) {
					t.Errorf("qemuSNPArgs() = %q, want it to contain %q", args, r)
				}
			}
			if tc.name != "default launch" {
				if !slices.ContainsFunc(args, func(a string) bool {
					return strings.HasPrefix(a, "sev-snp-guest,") && strings.Contains(a, ",policy=0xb0000,cbitpos=47,")
				}) {
					t.Errorf("qemuSNPArgs() = %q, want policy=0xb0000 and cbitpos=47 in the sev-snp-guest object", args)
				}
			}
			// What must never appear in a confidential launch.
			for _, bad := range []string{"tcg", "host", "-numa", "-enable-kvm"} {
				if slices.Contains(args, bad) {
					t.Errorf("qemuSNPArgs() = %q, want no %q", args, bad)
				}
			}
			ports := 0
			for i, a := range args {
				switch {
				case a != "-device":
				case strings.HasPrefix(args[i+1], "pcie-root-port,"):
					if want := fmt.Sprintf("pcie-root-port,id=hp%d,bus=pcie.0,chassis=%d,io-reserve=0", ports, ports+1); args[i+1] != want {
						t.Errorf("root port %q, want %q", args[i+1], want)
					}
					ports++
				case !strings.HasSuffix(args[i+1], iommu):
					t.Errorf("device %q lacks %q: an SNP guest refuses virtio devices without VIRTIO_F_ACCESS_PLATFORM", args[i+1], iommu)
				}
			}
			if ports != HotplugPorts {
				t.Errorf("qemuSNPArgs() has %d PCIe root ports, want %d for hot-added disks", ports, HotplugPorts)
			}
		})
	}
}

func TestSNPLaunchDefaults(t *testing.T) {
	l, err := SNPLaunch{OVMF: "/fw", CBitPos: 51, ReducedPhysBits: 1}.withDefaults()
	if err != nil {
		t.Fatalf("withDefaults() = %v", err)
	}
	if l.CPUModel != "EPYC-v4" || l.Policy != 0x30000 || l.CBitPos != 51 || l.ReducedPhysBits != 1 {
		t.Errorf("withDefaults() = %+v, want EPYC-v4, policy 0x30000, the given C-bit", l)
	}
	// Without the C-bit, the host's CPUID decides; a host without SEV has none to offer.
	if pos, reduced, ok := hostCBit(); ok {
		l, err := SNPLaunch{OVMF: "/fw"}.withDefaults()
		if err != nil || l.CBitPos != pos || l.ReducedPhysBits != reduced {
			t.Errorf("withDefaults() on an SEV host = %+v, %v; want cbitpos %d, reduced %d", l, err, pos, reduced)
		}
	} else if _, err := (SNPLaunch{OVMF: "/fw"}).withDefaults(); !errors.Is(err, ErrNoSNP) {
		t.Errorf("withDefaults() on a host without SEV = %v, want ErrNoSNP", err)
	}
}

// TestStartSNPNoHost: without SEV-SNP, both backends fail before starting any process.
func TestStartSNPNoHost(t *testing.T) {
	noSNP := filepath.Join(t.TempDir(), "sev_snp") // missing, as on this machine
	ctx := context.Background()
	tests := []struct {
		name  string
		start func(cfg Config) (VM, error)
	}{
		{"qemu", func(cfg Config) (VM, error) {
			return StartQEMU(ctx, cfg, WithSEVSNP(SNPLaunch{OVMF: "/fw"}), WithSNPProbe(noSNP), WithQEMU("/bin/true"), WithVhostDeviceVsock("/bin/true"))
		}},
		{"cloud-hypervisor", func(cfg Config) (VM, error) {
			cfg.Kernel, cfg.Initramfs, cfg.Cmdline, cfg.IGVM = "", "", "", "/img/guest.igvm"
			return StartCloudHypervisor(ctx, cfg, WithCHSNPProbe(noSNP), WithCloudHypervisor("/bin/true"))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			vm, err := tc.start(snpTestConfig(dir))
			if vm != nil || !errors.Is(err, ErrNoSNP) || !strings.Contains(err.Error(), noSNP) {
				t.Fatalf("start = %v, %v; want ErrNoSNP naming %s", vm, err, noSNP)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("run dir after the refused start holds %d entries, want none (nothing may start)", len(ents))
			}
		})
	}
}

func TestStartQEMUSNPRefusesTCG(t *testing.T) {
	dir := t.TempDir()
	_, err := StartQEMU(context.Background(), snpTestConfig(dir), WithSEVSNP(SNPLaunch{OVMF: "/fw", CBitPos: 51, ReducedPhysBits: 1}),
		WithSNPProbe(snpParamFile(t, "Y")), WithAccel(AccelTCG), WithQEMU("/bin/true"), WithVhostDeviceVsock("/bin/true"))
	if err == nil || !strings.Contains(err.Error(), "KVM only") {
		t.Errorf("StartQEMU(SEV-SNP, tcg) = %v, want a KVM-only error", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("run dir after the refused start holds %d entries, want none", len(ents))
	}
}

// snpCHConfig is the Config the launcher gives Cloud Hypervisor for --snp: guest.igvm with
// the vCPU count and memory size it was built for.
func snpCHConfig(dir string) Config {
	cfg := snpTestConfig(dir)
	cfg.Kernel, cfg.Initramfs, cfg.Cmdline, cfg.IGVM = "", "", "", "/img/guest.igvm"
	return cfg
}

// TestCHSNPVmConfigContract sends the --snp VmConfig to the contract server, which checks
// it against Cloud Hypervisor's OpenAPI spec, and checks what the VMM received.
func TestCHSNPVmConfigContract(t *testing.T) {
	dir := t.TempDir()
	f, stop, err := serveFakeCH(filepath.Join(dir, "api.sock"))
	if err != nil {
		t.Fatalf("serveFakeCH: %v", err)
	}
	defer stop()
	cfg := snpCHConfig(dir)
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	c := NewCHClient(filepath.Join(dir, "api.sock"))
	if err := c.Create(context.Background(), vmConfig(cfg, "/r/vm.vsock", "/r/console.log")); err != nil {
		t.Fatalf("Create(SEV-SNP config) = %v", err)
	}
	f.check(t)
	f.mu.Lock()
	body := f.config
	f.mu.Unlock()
	var got struct {
		Payload  map[string]any `json:"payload"`
		Cpus     map[string]any `json:"cpus"`
		Memory   map[string]any `json:"memory"`
		Platform map[string]any `json:"platform"`
		Disks    []map[string]any
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("vm.create body %s: %v", body, err)
	}
	wantPayload := map[string]any{"igvm": "/img/guest.igvm", "host_data": strings.Repeat("0f", 32)}
	if len(got.Payload) != len(wantPayload) || got.Payload["igvm"] != wantPayload["igvm"] || got.Payload["host_data"] != wantPayload["host_data"] {
		t.Errorf("payload = %v, want exactly %v (no kernel, initramfs or unmeasured cmdline)", got.Payload, wantPayload)
	}
	if got.Platform["sev_snp"] != true {
		t.Errorf("platform = %v, want sev_snp true", got.Platform)
	}
	if got.Cpus["boot_vcpus"] != 1.0 || got.Cpus["max_vcpus"] != 1.0 || got.Memory["size"] != float64(512<<20) {
		t.Errorf("cpus = %v, memory = %v; want 1 vCPU and 512 MiB as guest.igvm is built", got.Cpus, got.Memory)
	}
	if len(got.Disks) != 2 || got.Disks[0]["readonly"] != true {
		t.Errorf("disks = %v, want the read-only rootfs and the container disk", got.Disks)
	}
}

// TestStartCloudHypervisorSNP boots the --snp config through the fake cloud-hypervisor
// process (the test binary serving the contract server).
func TestStartCloudHypervisorSNP(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(fakeCHEnv, "1")
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	bad := snpCHConfig(dir)
	bad.HostData = ""
	if _, err := StartCloudHypervisor(ctx, bad, WithCloudHypervisor(self), WithCHSNPProbe(snpParamFile(t, "Y"))); err == nil || !strings.Contains(err.Error(), "want 64 hex digits") {
		t.Errorf("StartCloudHypervisor(SEV-SNP without host data) = %v, want a host data error", err)
	}
	vm, err := StartCloudHypervisor(ctx, snpCHConfig(dir), WithCloudHypervisor(self), WithCHSNPProbe(snpParamFile(t, "Y")))
	if err != nil {
		t.Fatalf("StartCloudHypervisor(fake, SEV-SNP) = %v", err)
	}
	if err := vm.Stop(ctx); err != nil {
		t.Errorf("Stop() = %v, want nil", err)
	}
	if err := vm.Wait(ctx); err != nil {
		t.Errorf("Wait() = %v, want nil (the fake VMM exits non-zero on contract violations)", err)
	}
	logData, _ := os.ReadFile(filepath.Join(dir, chLog))
	if want := "calls: vmm.ping vm.create vm.boot"; !strings.Contains(string(logData), want) {
		t.Errorf("fake VMM log = %q, want %q", logData, want)
	}
}
