package vmm

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func TestQEMUArgs(t *testing.T) {
	cfg := Config{
		Kernel:    "/img/bzImage",
		Initramfs: "/img/initramfs.cpio.gz",
		Cmdline:   "console=ttyS0 confguest.tee=none",
		CPUs:      2,
		MemoryMiB: 256,
		Disks: []Disk{
			{Path: "/img/rootfs.img", Serial: "rootfs", ReadOnly: true},
			{Path: "/run/x,y/ctr.img", Serial: "ctr0"},
		},
		RunDir: "/run/cg",
	}
	if err := cfg.validate(); err != nil {
		t.Fatalf("validate() = %v", err)
	}
	tests := []struct {
		accel    Accel
		want     [][]string // pairs or runs that must appear adjacent
		wantNone []string
	}{
		{
			accel: AccelTCG,
			want: [][]string{
				{"-accel", "tcg"},
				{"-m", "256M"},
				{"-smp", "2"},
				{"-object", "memory-backend-memfd,id=mem,size=256M,share=on"},
				{"-numa", "node,memdev=mem"},
				{"-chardev", "socket,id=vsock,path=/run/cg/vhost.sock"},
				{"-device", "vhost-user-vsock-pci,chardev=vsock"},
				{"-kernel", "/img/bzImage"},
				{"-initrd", "/img/initramfs.cpio.gz"},
				{"-append", "console=ttyS0 confguest.tee=none"},
				{"-drive", "file=/img/rootfs.img,if=none,id=disk0,format=raw,readonly=on"},
				{"-device", "virtio-blk-pci,drive=disk0,serial=rootfs"},
				{"-drive", "file=/run/x,,y/ctr.img,if=none,id=disk1,format=raw"},
				{"-device", "virtio-blk-pci,drive=disk1,serial=ctr0"},
				{"-serial", "file:/run/cg/console.log"},
				{"-qmp", "unix:/run/cg/qmp.sock,server=on,wait=off"},
				{"-nodefaults", "-no-user-config", "-no-reboot"},
			},
			wantNone: []string{"host", "-enable-kvm"},
		},
		{
			accel: AccelKVM,
			want:  [][]string{{"-accel", "kvm"}, {"-cpu", "host"}},
		},
	}
	for _, tc := range tests {
		t.Run(string(tc.accel), func(t *testing.T) {
			args := qemuArgs(cfg, tc.accel)
			for _, w := range tc.want {
				if !containsRun(args, w) {
					t.Errorf("qemuArgs(%s) = %q, want it to contain %q", tc.accel, args, w)
				}
			}
			for _, n := range tc.wantNone {
				if slices.Contains(args, n) {
					t.Errorf("qemuArgs(%s) = %q, want no %q", tc.accel, args, n)
				}
			}
		})
	}
	got := strings.Join(vhostArgs(cfg), " ")
	want := "--vm guest-cid=3,socket=/run/cg/vhost.sock,uds-path=/run/cg/vm.vsock"
	if got != want {
		t.Errorf("vhostArgs() = %q, want %q", got, want)
	}
}

func containsRun(args, run []string) bool {
	for i := 0; i+len(run) <= len(args); i++ {
		if slices.Equal(args[i:i+len(run)], run) {
			return true
		}
	}
	return false
}

func TestConfigValidate(t *testing.T) {
	base := func() Config { return Config{Kernel: "/k", RunDir: "/r"} }
	tests := []struct {
		name    string
		change  func(*Config)
		wantErr string
	}{
		{"defaults", func(*Config) {}, ""},
		{"memory too small", func(c *Config) { c.MemoryMiB = 64 }, "memory 64 MiB is too small"},
		{"too many cpus", func(c *Config) { c.CPUs = 1000 }, "cpus 1000"},
		{"reserved cid", func(c *Config) { c.GuestCID = 2 }, "reserved"},
		{"no kernel", func(c *Config) { c.Kernel = "" }, "no kernel"},
		{"long serial", func(c *Config) { c.Disks = []Disk{{Path: "/d", Serial: strings.Repeat("s", 21)}} }, "longer than 20"},
		{"comma in serial", func(c *Config) { c.Disks = []Disk{{Path: "/d", Serial: "a,b"}} }, "must not contain"},
		{"network device without a tap", func(c *Config) { c.NICs = []NIC{{MAC: "02:42:0a:58:4d:05"}} }, "no tap file"},
		{"network device with a multicast MAC", func(c *Config) { c.NICs = []NIC{{Tap: os.Stdin, MAC: "01:42:0a:58:4d:05"}} }, "want a unicast"},
		{"network device with a MAC that injects an option", func(c *Config) { c.NICs = []NIC{{Tap: os.Stdin, MAC: "02:42:0a:58:4d:05,romfile=/x"}} }, "want a unicast"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.change(&c)
			err := c.validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Errorf("validate(%+v) = %v, want nil", c, err)
				}
				if c.CPUs != 1 || c.MemoryMiB != 512 || c.GuestCID != 3 {
					t.Errorf("validate() defaults = %d cpus, %d MiB, cid %d; want 1, 512, 3", c.CPUs, c.MemoryMiB, c.GuestCID)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("validate(%+v) = %v, want error containing %q", c, err, tc.wantErr)
			}
		})
	}
}

// TestQEMUNetArgs: a pod's tap reaches QEMU as an inherited descriptor (fd 3 onwards, the
// order of startProc's extra files) with the veth's MAC on the guest's device; a VM
// without network devices gets none.
func TestQEMUNetArgs(t *testing.T) {
	cfg := Config{Kernel: "/k", RunDir: "/r", NICs: []NIC{{Tap: os.Stdin, MAC: "02:42:0a:58:4d:05"}, {Tap: os.Stdout, MAC: "02:42:0a:58:4d:06"}}}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	args := qemuArgs(cfg, AccelTCG)
	for _, w := range [][]string{
		{"-netdev", "tap,id=net0,fd=3", "-device", "virtio-net-pci,netdev=net0,mac=02:42:0a:58:4d:05,romfile="},
		{"-netdev", "tap,id=net1,fd=4", "-device", "virtio-net-pci,netdev=net1,mac=02:42:0a:58:4d:06,romfile="},
	} {
		if !containsRun(args, w) {
			t.Errorf("qemuArgs(two NICs) = %q, want it to contain %q", args, w)
		}
	}
	if got := nicFiles(cfg); len(got) != 2 || got[0] != os.Stdin || got[1] != os.Stdout {
		t.Errorf("nicFiles(two NICs) = %v, want the two taps in order", got)
	}
	// An SEV-SNP guest's devices, the network's too, go through the DMA API.
	if snp := qemuDevices(cfg, ",iommu_platform=on"); !slices.Contains(snp, "virtio-net-pci,netdev=net0,mac=02:42:0a:58:4d:05,romfile=,iommu_platform=on") {
		t.Errorf("qemuDevices(two NICs, iommu_platform) = %q, want the NIC with iommu_platform=on", snp)
	}
	cfg.NICs = nil
	if args := qemuArgs(cfg, AccelTCG); slices.Contains(args, "-netdev") {
		t.Errorf("qemuArgs(no NICs) = %q, want no -netdev", args)
	}
}
