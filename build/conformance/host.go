package conformance

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

// Host is what every harness here starts from: this tree, the guest image and shim built
// from it, and the CNI bridge its pods get.
type Host struct {
	Repo     string // the repository root (scripts under build/ and deploy/, the nnp program)
	ImageDir string // the guest image (make image's out/)
	Shim     string // containerd-shim-confguest-v2 built from this tree
	Bridge   string // CNI bridge name
	Subnet   string // CNI subnet (IPv4 CIDR); the bridge takes its first address
	Accel    string // the shim's QEMU accelerator: auto, tcg or kvm
}

// Flags registers -image, -shim, -bridge, -subnet and -accel on fs; bridge and subnet are
// the command's defaults, distinct per command so that two can run at once.
func (h *Host) Flags(fs *flag.FlagSet, bridge, subnet string) {
	fs.StringVar(&h.ImageDir, "image", "out", "the guest image (make image)")
	fs.StringVar(&h.Shim, "shim", "bin/containerd-shim-confguest-v2", "the containerd shim (make build)")
	fs.StringVar(&h.Bridge, "bridge", bridge, "name of the CNI bridge created for the pods (removed at the end)")
	fs.StringVar(&h.Subnet, "subnet", subnet, "pod subnet on that bridge; its first address is the bridge's")
	fs.StringVar(&h.Accel, "accel", "auto", "QEMU accelerator of the pods' VMs: auto, tcg or kvm")
}

// Resolve takes the repository root from the working directory (the commands run from it,
// as make does) and makes the image and shim paths absolute, since containerd and the shim
// run elsewhere.
func (h *Host) Resolve() error {
	repo, err := os.Getwd()
	if err != nil {
		return err
	}
	h.Repo = repo
	for _, p := range []*string{&h.ImageDir, &h.Shim} {
		if *p, err = filepath.Abs(*p); err != nil {
			return fmt.Errorf("resolve %s: %w", *p, err)
		}
	}
	return nil
}
