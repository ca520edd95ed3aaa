package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"confguest/hostside/image"
	"confguest/hostside/image/imagetest"
	"confguest/hostside/vmm"
)

func TestRunBadInput(t *testing.T) {
	img := imagetest.Guest(t, nil)
	// What make image publishes for guest.igvm (an SEV-SNP Cloud Hypervisor launch is held to it).
	if err := os.WriteFile(filepath.Join(img, "measurement.json"), []byte(`{"cloud_hypervisor_igvm": {"vcpus": 1, "memory_mib": 512}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tampered := imagetest.Guest(t, nil)
	os.WriteFile(filepath.Join(tampered, "initramfs.cpio.gz"), []byte("evil init"), 0o644)
	rootfsDir := t.TempDir()
	emptyLayout := t.TempDir()
	missingBlob, mismatch := brokenLayouts(t)
	runDir := t.TempDir()
	badPolicy := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(badPolicy, []byte(`{"version": 1, "allow_all": true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	// Any existing file stands in for vhost-device-vsock: these runs fail before it starts.
	common := []string{"--run-dir", runDir, "--quiet", "--vhost-device-vsock", "/bin/sh"}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  []string
	}{
		{"unknown vmm", []string{"run", "--vmm", "xen", "--image", img, "--rootfs", rootfsDir, "--", "true"}, 2, []string{`--vmm "xen"`, "qemu or cloud-hypervisor"}},
		{"memory too small", []string{"run", "--memory", "64M", "--image", img, "--rootfs", rootfsDir, "--", "true"}, 2, []string{"--memory 64M is too small", "128M"}},
		{"memory unparsable", []string{"run", "--memory", "lots", "--image", img, "--rootfs", rootfsDir, "--", "true"}, 2, []string{"--memory", "512M or 1G"}},
		{"no source", []string{"run", "--image", img, "--", "true"}, 2, []string{"exactly one of --rootfs"}},
		{"two sources", []string{"run", "--image", img, "--rootfs", rootfsDir, "--pull", "x", "--", "true"}, 2, []string{"exactly one of --rootfs"}},
		{"rootfs missing", []string{"run", "--image", img, "--rootfs", filepath.Join(rootfsDir, "nope"), "--", "true"}, 1, []string{"container rootfs", "nope", "no such file"}},
		{"tampered image", []string{"run", "--image", tampered, "--rootfs", rootfsDir, "--", "true"}, 1, []string{"refused before boot", "initramfs.cpio.gz", "make image"}},
		{"missing image", []string{"run", "--image", filepath.Join(img, "nope"), "--rootfs", rootfsDir, "--", "true"}, 1, []string{"manifest.json", "make image"}},
		{"oci layout without index", []string{"run", "--image", img, "--oci", emptyLayout, "--", "true"}, 1, []string{"not an OCI image layout"}},
		{"snp under tcg", []string{"run", "--snp", "--accel", "tcg", "--image", img, "--rootfs", rootfsDir, "--", "true"}, 2, []string{"--snp runs under KVM only"}},
		{"snp cloud-hypervisor 2 cpus", []string{"run", "--vmm", "cloud-hypervisor", "--snp", "--cpus", "2", "--image", img, "--rootfs", rootfsDir, "--", "true"}, 1, []string{"--cpus 2", "guest.igvm is built for 1 vCPU"}},
		{"snp cloud-hypervisor 1G", []string{"run", "--vmm", "cloud-hypervisor", "--snp", "--memory", "1G", "--image", img, "--rootfs", rootfsDir, "--", "true"}, 1, []string{"--memory 1024M", "512 MiB"}},
		{"ovmf without snp", []string{"run", "--ovmf", "/fw", "--image", img, "--rootfs", rootfsDir, "--", "true"}, 2, []string{"--ovmf is for --snp"}},
		{"bad host data", []string{"run", "--vmm", "cloud-hypervisor", "--snp", "--host-data", "12", "--image", img, "--rootfs", rootfsDir, "--", "true"}, 1, []string{"64 hex digits"}},
		{"cloud-hypervisor missing", []string{"run", "--vmm", "cloud-hypervisor", "--image", img, "--rootfs", rootfsDir, "--", "true"}, 1, []string{"cloud-hypervisor is not on PATH", "--vmm qemu"}},
		{"oci layout missing blob", []string{"run", "--image", img, "--oci", missingBlob, "--", "true"}, 1, []string{missingBlob, "layer 0", "no such file"}},
		{"oci layout digest mismatch", []string{"run", "--image", img, "--oci", mismatch, "--", "true"}, 1, []string{mismatch, "digest mismatch", "export or pull it again"}},
		{"bad accel", []string{"run", "--accel", "hvf", "--image", img, "--rootfs", rootfsDir, "--", "true"}, 2, []string{"--accel"}},
		{"start without name", []string{"start", "--image", img, "--rootfs", rootfsDir}, 2, []string{"--name is required"}},
		{"start bad name", []string{"start", "--name", "../x", "--image", img, "--rootfs", rootfsDir}, 2, []string{"guest name"}},
		{"start --exec with --policy", []string{"start", "--name", "x", "--policy", "/p.json", "--exec", "ls", "--image", img, "--rootfs", rootfsDir}, 2, []string{"--exec", "with --policy, list the commands in the policy's exec"}},
		{"run --policy invalid", []string{"run", "--policy", badPolicy, "--image", img, "--rootfs", rootfsDir, "--", "true"}, 1, []string{badPolicy, `unknown field "allow_all"`}},
		{"exec unknown guest", []string{"exec", "--run-dir", runDir, "ghost", "--", "ls"}, 1, []string{`"ghost"`, "no such guest"}},
		{"logs unknown guest", []string{"logs", "--run-dir", runDir, "ghost"}, 1, []string{"no such guest"}},
		{"stop unknown guest", []string{"stop", "--run-dir", runDir, "ghost"}, 1, []string{"no such guest"}},
		{"exec without command", []string{"exec", "--run-dir", runDir, "ghost"}, 2, []string{"NAME -- CMD"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if args[0] == "run" || args[0] == "start" {
				args = append([]string{args[0]}, append(append([]string(nil), common...), args[1:]...)...)
			}
			var out, errOut bytes.Buffer
			code := Main(context.Background(), args, Stdio{In: strings.NewReader(""), Out: &out, Err: &errOut})
			if code != tc.wantCode {
				t.Errorf("confguest %q exit = %d, want %d (stderr %q)", tc.args, code, tc.wantCode, errOut.String())
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("confguest %q stderr = %q, want it to mention %q", tc.args, errOut.String(), w)
				}
			}
		})
	}
	if ents, _ := os.ReadDir(runDir); len(ents) != 0 {
		t.Errorf("run dir after failed runs holds %d entries, want none", len(ents))
	}
}

func TestPsEmpty(t *testing.T) {
	var out bytes.Buffer
	code := Main(context.Background(), []string{"ps", "--run-dir", t.TempDir()}, Stdio{Out: &out, Err: &out})
	if code != 0 || !strings.HasPrefix(out.String(), "NAME") || strings.Count(out.String(), "\n") != 1 {
		t.Errorf("confguest ps (no guests) = %d, %q; want 0 and a header only", code, out.String())
	}
}

func TestParseMemory(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"512M", 512, true}, {"1G", 1024, true}, {"2048", 2048, true}, {"256MiB", 256, true},
		{"1gb", 1024, true}, {"0", 0, false}, {"-5M", 0, false}, {"lots", 0, false}, {"", 0, false},
	}
	for _, tc := range tests {
		got, err := parseMemory(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseMemory(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// brokenLayouts writes two OCI layouts of a random image: one missing its layer blob, one
// whose layer blob does not match its digest.
func brokenLayouts(t *testing.T) (missingBlob, mismatch string) {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	var dirs []string
	for range 2 {
		dir := filepath.Join(t.TempDir(), "layout")
		p, err := layout.Write(dir, empty.Index)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.AppendImage(img, layout.WithPlatform(image.Platform)); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, dir)
	}
	os.Remove(filepath.Join(dirs[0], "blobs", d.Algorithm, d.Hex))
	os.WriteFile(filepath.Join(dirs[1], "blobs", d.Algorithm, d.Hex), []byte("tampered"), 0o644)
	return dirs[0], dirs[1]
}

// TestRunSNPNoHost: on a host without SEV-SNP (this project's machines), run --snp fails
// with the probe's error under either VMM before anything is built or started.
func TestRunSNPNoHost(t *testing.T) {
	if vmm.ProbeSNP("") == nil {
		t.Skip("this host runs SEV-SNP guests")
	}
	img := imagetest.Guest(t, nil)
	rootfsDir := t.TempDir()
	for _, v := range []string{"qemu", "cloud-hypervisor"} {
		t.Run(v, func(t *testing.T) {
			runDir := t.TempDir()
			var out, errOut bytes.Buffer
			args := []string{"run", "--snp", "--vmm", v, "--run-dir", runDir, "--image", img, "--rootfs", rootfsDir, "--", "true"}
			code := Main(context.Background(), args, Stdio{In: strings.NewReader(""), Out: &out, Err: &errOut})
			want := "no SEV-SNP on this host (" + vmm.SNPParam
			if code != 1 || !strings.Contains(errOut.String(), want) {
				t.Errorf("confguest %q = %d, stderr %q; want 1 and %q", args, code, errOut.String(), want)
			}
			if strings.Contains(errOut.String(), "checking guest image") || strings.Contains(errOut.String(), "building container disk") {
				t.Errorf("confguest %q stderr = %q: the image was checked or a disk built before the SEV-SNP probe", args, errOut.String())
			}
			if ents, _ := os.ReadDir(runDir); len(ents) != 0 {
				t.Errorf("run dir holds %d entries after the refusal, want none", len(ents))
			}
		})
	}
}
