// Package vmm starts and stops the confguest VM under a virtual machine monitor. Two
// backends share one interface: QEMU (development and tests; TCG, or KVM where a vCPU
// really runs) with vsock through vhost-device-vsock, and Cloud Hypervisor (production)
// driven through its REST API. Both expose the guest's vsock as a hybrid vsock unix socket.
package vmm

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
)

// Disk is a block device given to the guest. The guest finds it by Serial
// (/dev/disk/by-id/virtio-<Serial>), so keep serials short (at most 20 bytes).
type Disk struct {
	Path     string
	Serial   string
	ReadOnly bool
}

// NIC is a virtio-net device backed by a tap device the caller opened (the pod's, joined
// to its CNI interface): the VMM gets the open tap, not its name, so the tap may live in
// another network namespace than the VMM. MAC is the guest device's address, the pod
// veth's, so the CNI bridge's view of the pod stays valid.
type NIC struct {
	Tap *os.File
	MAC string // aa:bb:cc:dd:ee:ff
}

// Config describes one VM. Paths are absolute.
type Config struct {
	Kernel    string
	Initramfs string
	Cmdline   string
	// IGVM and HostData (64 hex digits) are used by Cloud Hypervisor for SEV-SNP guests.
	IGVM     string
	HostData string
	SEVSNP   bool

	CPUs      int
	MemoryMiB int
	Disks     []Disk
	NICs      []NIC
	// GuestCID is the guest's vsock CID (default 3).
	GuestCID uint32
	// RunDir holds the VMM's sockets and the console log; it must exist.
	RunDir string
}

// MinMemoryMiB is the least memory the guest boots with.
const MinMemoryMiB = 128

// DefaultCPUs and DefaultMemoryMiB size a guest whose Config leaves CPUs or MemoryMiB 0.
const (
	DefaultCPUs      = 1
	DefaultMemoryMiB = 512
	// MaxCPUs is the most vCPUs a guest gets.
	MaxCPUs = 255
)

func (c *Config) validate() error {
	if c.CPUs == 0 {
		c.CPUs = DefaultCPUs
	}
	if c.MemoryMiB == 0 {
		c.MemoryMiB = DefaultMemoryMiB
	}
	if c.GuestCID == 0 {
		c.GuestCID = 3
	}
	switch {
	case c.CPUs < 1 || c.CPUs > MaxCPUs:
		return fmt.Errorf("cpus %d: want 1 to %d", c.CPUs, MaxCPUs)
	case c.MemoryMiB < MinMemoryMiB:
		return fmt.Errorf("memory %d MiB is too small: the guest needs at least %d MiB", c.MemoryMiB, MinMemoryMiB)
	case c.GuestCID < 3:
		return fmt.Errorf("guest CID %d: CIDs below 3 are reserved", c.GuestCID)
	case c.RunDir == "":
		return fmt.Errorf("no run directory given")
	case strings.ContainsAny(c.RunDir, ","):
		return fmt.Errorf("run directory %s: must not contain ','", c.RunDir)
	case c.Kernel == "" && c.IGVM == "":
		return fmt.Errorf("no kernel or IGVM file given")
	}
	for i, n := range c.NICs {
		if n.Tap == nil {
			return fmt.Errorf("network device %d: no tap file given", i)
		}
		if mac, err := net.ParseMAC(n.MAC); err != nil || len(mac) != 6 || mac[0]&1 != 0 {
			return fmt.Errorf("network device %d: MAC %q: want a unicast aa:bb:cc:dd:ee:ff", i, n.MAC)
		}
	}
	for _, d := range c.Disks {
		if len(d.Serial) > 20 {
			return fmt.Errorf("disk %s: serial %q longer than 20 bytes", d.Path, d.Serial)
		}
		if strings.ContainsAny(d.Serial, ",= ") {
			return fmt.Errorf("disk %s: serial %q must not contain ',', '=' or spaces", d.Path, d.Serial)
		}
	}
	return nil
}

// VM is a running virtual machine.
type VM interface {
	// VsockPath is the hybrid vsock unix socket of the guest.
	VsockPath() string
	// ConsoleTail returns up to n last lines of the guest's serial console.
	ConsoleTail(n int) []string
	// ConsolePath is the file the guest's serial console is written to.
	ConsolePath() string
	// Done is closed when the VMM (or a helper it needs) exited.
	Done() <-chan struct{}
	// Wait blocks until the VMM exited and reports how: nil for a clean guest power-off.
	Wait(ctx context.Context) error
	// Stop asks the guest to power off, waits up to the ctx deadline, then kills the VMM
	// and its helpers and removes their sockets. It is safe to call more than once.
	Stop(ctx context.Context) error
	// PIDs lists the host processes of this VM, helpers first and the VMM last.
	PIDs() []int
}

// consoleTail returns the last n lines of the file at path.
func consoleTail(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	const window = 16 << 10
	st, err := f.Stat()
	if err != nil {
		return nil
	}
	off := st.Size() - window
	if off < 0 {
		off = 0
	}
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && len(buf) == 0 {
		return nil
	}
	text := strings.ReplaceAll(string(buf), "\r", "")
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if off > 0 && len(lines) > 1 {
		lines = lines[1:] // first line is cut
	}
	if len(lines) == 1 && lines[0] == "" {
		return nil
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// once runs cleanup once and remembers its error.
type once struct {
	o   sync.Once
	err error
}

func (o *once) do(f func() error) error {
	o.o.Do(func() { o.err = f() })
	return o.err
}
