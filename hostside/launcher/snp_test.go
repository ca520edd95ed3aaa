package launcher

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"confguest/build/igvmboot"
	"confguest/hostside/image"
	"confguest/hostside/vmm"
	"confguest/measure"
	"confguest/measure/vectors"
	"confguest/rootfs"
)

// snpParam writes a fake kvm_amd sev_snp parameter.
func snpParam(t *testing.T, v string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sev_snp")
	if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestPrepareSNP(t *testing.T) {
	doc := []byte(`{"version":1}`)
	docHash := sha256Hex(doc)
	emptyHash := "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" // SHA-256 of no bytes
	yes := snpParam(t, "Y")
	tests := []struct {
		name         string
		o            Options
		doc          []byte                   // the policy Boot gets
		pub          *measure.IGVMMeasurement // measurement.json's cloud_hypervisor_igvm; nil: published
		wantHostData string
		wantFrom     string
		wantCPUs     int
		wantMem      int
		wantErr      string
	}{
		{name: "qemu, no policy", o: Options{VMM: QEMU}, wantHostData: emptyHash, wantFrom: "empty policy"},
		{name: "qemu, policy", o: Options{VMM: QEMU, CPUs: 4, MemoryMiB: 2048}, doc: doc, wantHostData: docHash, wantFrom: "of the policy", wantCPUs: 4, wantMem: 2048},
		{name: "policy and its hash", o: Options{VMM: QEMU, HostData: strings.ToUpper(docHash)}, doc: doc, wantHostData: docHash, wantFrom: "of the policy"},
		{name: "policy and another hash", o: Options{VMM: QEMU, HostData: emptyHash}, doc: doc, wantErr: "differs from the policy's SHA-256 " + docHash},
		{name: "host data alone", o: Options{VMM: QEMU, HostData: strings.Repeat("AB", 32)}, wantHostData: strings.Repeat("ab", 32), wantFrom: "--host-data"},
		{name: "qemu under tcg", o: Options{VMM: QEMU, Accel: vmm.AccelTCG}, wantErr: "KVM only"},
		{name: "cloud-hypervisor defaults", o: Options{VMM: CloudHypervisor}, wantHostData: emptyHash, wantCPUs: 1, wantMem: 512, wantFrom: "empty policy"},
		{name: "cloud-hypervisor 1 vCPU 512M", o: Options{VMM: CloudHypervisor, CPUs: 1, MemoryMiB: 512}, wantHostData: emptyHash, wantCPUs: 1, wantMem: 512, wantFrom: "empty policy"},
		{name: "cloud-hypervisor 2 vCPUs", o: Options{VMM: CloudHypervisor, CPUs: 2}, wantErr: "guest.igvm is built for 1 vCPU"},
		{name: "cloud-hypervisor 1G", o: Options{VMM: CloudHypervisor, MemoryMiB: 1024}, wantErr: "guest.igvm is built for 512 MiB"},
		{name: "cloud-hypervisor, old measurement.json", o: Options{VMM: CloudHypervisor}, pub: &measure.IGVMMeasurement{VCPUs: 1}, wantErr: "rebuild with make image"},
	}
	// What make image publishes for guest.igvm.
	published := &measure.IGVMMeasurement{VCPUs: 1, MemoryMiB: 512}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			o.SNPParam = yes
			pub := tc.pub
			if pub == nil {
				pub = published
			}
			o.ImageDir = t.TempDir()
			b, _ := json.Marshal(map[string]any{"cloud_hypervisor_igvm": pub})
			os.WriteFile(filepath.Join(o.ImageDir, "measurement.json"), b, 0o644)
			err := prepareSNP(&o)
			var hd, from string
			if err == nil {
				hd, from, err = snpHostData(o.HostData, tc.doc)
			}
			if err != nil || tc.wantErr != "" {
				if err == nil || tc.wantErr == "" || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("prepareSNP(%+v), snpHostData = %v, want error containing %q", tc.o, err, tc.wantErr)
				}
				return
			}
			if hd != tc.wantHostData || !strings.Contains(from, tc.wantFrom) {
				t.Errorf("snpHostData(%q, %q): host data %s (%s), want %s (%s)", tc.o.HostData, tc.doc, hd, from, tc.wantHostData, tc.wantFrom)
			}
			if o.CPUs != tc.wantCPUs || o.MemoryMiB != tc.wantMem {
				t.Errorf("prepareSNP(%+v): %d vCPUs, %d MiB; want %d, %d", tc.o, o.CPUs, o.MemoryMiB, tc.wantCPUs, tc.wantMem)
			}
		})
	}
	if got := HostDataFor(nil); got != emptyHash {
		t.Errorf("HostDataFor(nil) = %s, want %s", got, emptyHash)
	}
}

// TestNewSNPNoHost: on a host without SEV-SNP, --snp fails before the image is checked, the
// run directory created or a VMM looked up.
func TestNewSNPNoHost(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "sev_snp")
	for _, v := range []string{QEMU, CloudHypervisor} {
		for _, param := range []string{missing, snpParam(t, "N")} {
			t.Run(v, func(t *testing.T) {
				base := t.TempDir()
				o := Options{VMM: v, SEVSNP: true, SNPParam: param, ImageDir: filepath.Join(t.TempDir(), "no-image"), RunBase: base}
				_, err := New(context.Background(), o)
				if !errors.Is(err, vmm.ErrNoSNP) || !strings.HasPrefix(err.Error(), "no SEV-SNP on this host ("+param) {
					t.Fatalf("New(--snp --vmm %s) = %v, want the no SEV-SNP error naming %s", v, err, param)
				}
				if ents, _ := os.ReadDir(base); len(ents) != 0 {
					t.Errorf("run base after the refusal holds %d entries, want none", len(ents))
				}
			})
		}
	}
}

// fakeBzImage is a bzImage setup header (Linux boot protocol 2.15) with a few KiB of kernel.
func fakeBzImage() []byte {
	b := make([]byte, 5*512+8192)
	le := binary.LittleEndian
	b[0x1F1] = 4 // setup_sects
	le.PutUint16(b[0x1FE:], 0xAA55)
	b[0x200], b[0x201] = 0xEB, 0x6A
	copy(b[0x202:], "HdrS")
	le.PutUint16(b[0x206:], 0x20F)
	b[0x211] = 1                        // LOADED_HIGH
	le.PutUint32(b[0x22C:], 0x7FFFFFFF) // initrd_addr_max
	le.PutUint32(b[0x238:], 2048)       // cmdline_size
	le.PutUint64(b[0x258:], 0x1000000)  // pref_address
	le.PutUint32(b[0x260:], 1<<20)      // init_size
	for i := 5 * 512; i < len(b); i++ {
		b[i] = byte(i * 13)
	}
	return b
}

// snpImage writes a guest image as make image lays it out, with guest.igvm and a
// measurement.json from write (which may publish wrong values), and returns its directory.
func snpImage(t *testing.T, ovmf string, write func(dir string) []byte) string {
	t.Helper()
	dir := t.TempDir()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "init"), []byte("#!/bin/sh\n"), 0o755)
	params, err := rootfs.Build(context.Background(), src, filepath.Join(dir, "rootfs.img"))
	if err != nil {
		t.Fatalf("rootfs.Build: %v", err)
	}
	const cmdline = "console=ttyS0 confguest.roothash=00ff"
	kernel, initrd := fakeBzImage(), []byte("initramfs")
	igvm, err := igvmboot.Build(kernel, initrd, cmdline, igvmboot.Options{MemoryMiB: 64})
	if err != nil {
		t.Fatalf("igvmboot.Build: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "bzImage"), kernel, 0o644)
	os.WriteFile(filepath.Join(dir, "initramfs.cpio.gz"), initrd, 0o644)
	os.WriteFile(filepath.Join(dir, "cmdline"), []byte(cmdline+"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "guest.igvm"), igvm, 0o644)
	os.WriteFile(filepath.Join(dir, "measurement.json"), write(dir), 0o644)
	m := image.Manifest{Verity: params}
	for _, n := range []string{"bzImage", "initramfs.cpio.gz", "rootfs.img", "cmdline", "guest.igvm", "measurement.json"} {
		b, _ := os.ReadFile(filepath.Join(dir, n))
		m.Artifacts = append(m.Artifacts, image.Artifact{Name: n, Size: int64(len(b)), SHA256: sha256Hex(b)})
	}
	b, _ := json.Marshal(m)
	os.WriteFile(filepath.Join(dir, "manifest.json"), b, 0o644)
	return dir
}

// publish returns a measurement.json writer: the true digests of the image in dir for 1
// vCPU, with change applied.
func publish(t *testing.T, ovmf string, change func(*published)) func(dir string) []byte {
	return func(dir string) []byte {
		var p published
		var err error
		p.CloudHypervisor, err = measure.MeasureIGVM(filepath.Join(dir, "guest.igvm"), measure.IGVMOptions{Rules: measure.RulesKVM, VCPUs: 1})
		if err != nil {
			t.Fatal(err)
		}
		p.CloudHypervisor.MemoryMiB = 64 // snpImage's guest.igvm
		if ovmf != "" {
			p.QEMU, err = measure.ForImage(ovmf, filepath.Join(dir, "bzImage"), filepath.Join(dir, "initramfs.cpio.gz"), "console=ttyS0 confguest.roothash=00ff", 1, "EPYC-v4")
			if err != nil {
				t.Fatal(err)
			}
		}
		change(&p)
		b, _ := json.Marshal(p)
		return b
	}
}

// TestNewSNPMeasurement: before boot, New computes the launch measurement of the chosen
// mode, prints it with HOST_DATA, and refuses an image whose measurement.json disagrees.
func TestNewSNPMeasurement(t *testing.T) {
	ovmf := filepath.Join(vectors.Dir(t), "OVMF.amdsev.fd")
	good := snpImage(t, ovmf, publish(t, ovmf, func(*published) {}))
	wrong := snpImage(t, ovmf, publish(t, ovmf, func(p *published) {
		p.CloudHypervisor.Measurement = strings.Repeat("0", 96)
		p.QEMU.Measurement = strings.Repeat("0", 96)
	}))
	noVhost := []vmm.QEMUOption{vmm.WithVhostDeviceVsock("/bin/true"), vmm.WithQEMU("/bin/true")}
	noCH := []vmm.CHOption{vmm.WithCloudHypervisor("/bin/true")}
	pub := func(dir string) published {
		var p published
		b, _ := os.ReadFile(filepath.Join(dir, "measurement.json"))
		json.Unmarshal(b, &p)
		return p
	}
	tests := []struct {
		name          string
		o             Options
		wantPublished string // "" for a launch measurement.json does not cover
		wantErr       string
	}{
		{name: "cloud-hypervisor", o: Options{VMM: CloudHypervisor, ImageDir: good, CH: noCH}, wantPublished: pub(good).CloudHypervisor.Measurement},
		{name: "qemu", o: Options{VMM: QEMU, ImageDir: good, OVMF: ovmf, QEMU: noVhost}, wantPublished: pub(good).QEMU.Measurement},
		{name: "qemu, 2 vCPUs", o: Options{VMM: QEMU, ImageDir: good, OVMF: ovmf, QEMU: noVhost, CPUs: 2}},
		{name: "cloud-hypervisor, wrong published value", o: Options{VMM: CloudHypervisor, ImageDir: wrong, CH: noCH}, wantErr: "but measurement.json publishes 000000"},
		{name: "qemu, wrong published value", o: Options{VMM: QEMU, ImageDir: wrong, OVMF: ovmf, QEMU: noVhost}, wantErr: "but measurement.json publishes 000000"},
		{name: "qemu, other firmware", o: Options{VMM: QEMU, ImageDir: good, OVMF: otherOVMF(t, ovmf), QEMU: noVhost}, wantErr: "use the pinned ovmf-amdsev"},
		{name: "qemu, no firmware", o: Options{VMM: QEMU, ImageDir: good, QEMU: noVhost, CacheDir: t.TempDir()}, wantErr: "run build/debpin.sh ovmf-amdsev"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var progress bytes.Buffer
			o := tc.o
			o.SEVSNP, o.SNPParam, o.RunBase, o.Progress = true, snpParam(t, "1"), t.TempDir(), &progress
			s, err := New(context.Background(), o)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("New(%s) = %v, want error containing %q", tc.name, err, tc.wantErr)
				}
				if ents, _ := os.ReadDir(o.RunBase); len(ents) != 0 {
					t.Errorf("run base after the refusal holds %d entries, want none", len(ents))
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%s) = %v", tc.name, err)
			}
			defer s.Close(context.Background())
			l := s.snp
			if l == nil || len(l.Measurement) != 96 || l.Published != tc.wantPublished {
				t.Fatalf("New(%s).SNP = %+v, want a measurement with published %q", tc.name, l, tc.wantPublished)
			}
			if tc.wantPublished != "" && l.Measurement != tc.wantPublished {
				t.Errorf("measurement %s, published %s: want equal", l.Measurement, tc.wantPublished)
			}
			if tc.wantPublished == "" && l.Measurement == pub(good).QEMU.Measurement {
				t.Errorf("measurement for %d vCPUs = the published 1-vCPU value %s, want another", l.VCPUs, l.Measurement)
			}
			// No policy yet: HOST_DATA follows the one Boot gets.
			doc := []byte(testPolicy)
			if err := s.settlePolicy(doc); err != nil {
				t.Fatalf("settlePolicy: %v", err)
			}
			if l.HostData != HostDataFor(doc) {
				t.Errorf("SNP.HostData after settlePolicy = %s, want %s", l.HostData, HostDataFor(doc))
			}
			out := progress.String()
			for _, w := range []string{"expected MEASUREMENT " + l.Measurement, "HOST_DATA: the SHA-256 of the policy, printed at boot",
				"HOST_DATA " + HostDataFor(doc) + " (SHA-256 of the policy for this run)"} {
				if !strings.Contains(out, w) {
					t.Errorf("progress = %q, want it to contain %q", out, w)
				}
			}
		})
	}
}

// otherOVMF writes a copy of the firmware with one byte of its first page changed.
func otherOVMF(t *testing.T, ovmf string) string {
	b, err := os.ReadFile(ovmf)
	if err != nil {
		t.Fatal(err)
	}
	b[100] ^= 0xff
	p := filepath.Join(t.TempDir(), "OVMF.other.fd")
	os.WriteFile(p, b, 0o644)
	return p
}
