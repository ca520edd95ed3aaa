package measure

import (
	"os"
	"path/filepath"
	"testing"

	"confguest/measure/vectors"
)

// BenchmarkSNP measures the OVMF image of the reference vectors with a 10 MiB kernel and a
// 50 MiB initrd, reading every input from files as `confguest measure` does.
func BenchmarkSNP(b *testing.B) {
	ovmf := filepath.Join(vectors.Dir(b), "OVMF.amdsev.fd")
	dir := b.TempDir()
	kernel, initrd := filepath.Join(dir, "bzImage"), filepath.Join(dir, "initrd")
	const kernelSize, initrdSize = 10 << 20, 50 << 20
	if err := os.WriteFile(kernel, vectors.Synthetic("bench-kernel", kernelSize), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(initrd, vectors.Synthetic("bench-initrd", initrdSize), 0o644); err != nil {
		b.Fatal(err)
	}
	o := Options{OVMF: ovmf, Kernel: kernel, Initrd: initrd, Append: "console=ttyS0 confguest.root=/dev/vda",
		VCPUs: 4, VCPUType: "EPYC-Milan", GuestFeatures: DefaultGuestFeatures}
	fi, err := os.Stat(ovmf)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(fi.Size() + kernelSize + initrdSize)
	b.ResetTimer()
	for b.Loop() {
		if _, err := SNP(o); err != nil {
			b.Fatal(err)
		}
	}
}
