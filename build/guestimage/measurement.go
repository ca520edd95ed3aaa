package guestimage

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"confguest/build/igvmboot"
	"confguest/measure"
)

// The documented default SEV-SNP launch the published measurement is computed for:
// QEMU with Debian's ovmf-amdsev firmware, one vCPU of QEMU's EPYC-v4 model (which
// Milan, Genoa and Turin hosts all run), default guest features.
const (
	DefaultVCPUs    = 1
	DefaultVCPUType = "EPYC-v4"
	MeasurementFile = "measurement.json"
	ovmfInPackage   = "usr/share/ovmf/OVMF.amdsev.fd"
)

// Measurements is the content of measurement.json: the expected SNP launch digest of the
// image for each supported launch path, with every input it covers.
type Measurements struct {
	QEMU            *measure.Measurement     `json:"qemu_ovmf"`
	CloudHypervisor *measure.IGVMMeasurement `json:"cloud_hypervisor_igvm"`
}

// IGVMFile is the direct-boot IGVM file for SEV-SNP launches under Cloud Hypervisor:
// kernel, initramfs and command line in measured pages (see package igvmboot).
const IGVMFile = "guest.igvm"

// writeIGVM builds guest.igvm from the image's kernel, initramfs and command line.
func writeIGVM(dir, cmdline string) error {
	kernel, err := os.ReadFile(filepath.Join(dir, KernelFile))
	if err != nil {
		return err
	}
	initrd, err := os.ReadFile(filepath.Join(dir, InitramfsFile))
	if err != nil {
		return err
	}
	b, err := igvmboot.Build(kernel, initrd, cmdline, igvmboot.Options{})
	if err != nil {
		return fmt.Errorf("build %s: %w", IGVMFile, err)
	}
	return os.WriteFile(filepath.Join(dir, IGVMFile), b, 0o644)
}

// pinnedFile fetches a package pinned in build/packages.lock and returns the path of
// file inside it.
func pinnedFile(ctx context.Context, srcDir, pkg, file string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(srcDir, "build", "debpin.sh"), pkg)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("fetch pinned package %s: %w", pkg, err)
	}
	p := filepath.Join(strings.TrimSpace(string(out)), file)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("pinned package %s lacks %s: %w", pkg, file, err)
	}
	return p, nil
}

// writeMeasurements computes measurement.json for the image in dir.
func writeMeasurements(ctx context.Context, srcDir, dir, cmdline string) error {
	ovmf, err := pinnedFile(ctx, srcDir, "ovmf-amdsev", ovmfInPackage)
	if err != nil {
		return err
	}
	q, err := measure.ForImage(ovmf, filepath.Join(dir, KernelFile), filepath.Join(dir, InitramfsFile), cmdline, DefaultVCPUs, DefaultVCPUType)
	if err != nil {
		return fmt.Errorf("measure the QEMU + OVMF launch: %w", err)
	}
	ch, err := measure.MeasureIGVM(filepath.Join(dir, IGVMFile), measure.IGVMOptions{Rules: measure.RulesKVM, VCPUs: igvmboot.DefaultVCPUs})
	if err != nil {
		return fmt.Errorf("measure the Cloud Hypervisor IGVM launch: %w", err)
	}
	ch.MemoryMiB = igvmboot.DefaultMemoryMiB // what writeIGVM built it for; the launcher holds the VM to it
	data, err := json.MarshalIndent(Measurements{QEMU: q, CloudHypervisor: ch}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, MeasurementFile), append(data, '\n'), 0o644)
}
