package boot

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/u-root/u-root/pkg/mount"
	"golang.org/x/sys/unix"

	"confguest/init/cmdline"
	"confguest/init/devmapper"
	"confguest/rootfs/verity"
)

// rootDiskFix tells the operator what to do about a wrong root disk.
const rootDiskFix = "attach the rootfs.img built together with this kernel command line as the first virtio-blk disk"

// WaitDevice waits for the confguest.root block device to appear.
type WaitDevice struct {
	Config  *cmdline.Config
	Timeout time.Duration // zero means 2s
}

func (w WaitDevice) String() string { return "wait for root device" }

func (w WaitDevice) Run(ctx context.Context) error {
	timeout := w.Timeout
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for {
		var st unix.Stat_t
		err := unix.Stat(w.Config.Root, &st)
		if err == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK {
			return nil
		}
		if err == nil {
			return fmt.Errorf("%s=%s is not a block device: %s", cmdline.KeyRoot, w.Config.Root, rootDiskFix)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %s=%s did not appear within %v: %s", ErrNoRootDevice, cmdline.KeyRoot, w.Config.Root, timeout, rootDiskFix)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// CreateVerity creates the dm-verity device over the root device with the
// parameters from the command line.
type CreateVerity struct {
	Config *cmdline.Config
	Name   string
}

func (c CreateVerity) String() string { return "create dm-verity device " + c.Name }

func (c CreateVerity) Run(ctx context.Context) error {
	_, err := devmapper.CreateVerity(ctx, c.Name, VerityTarget(c.Config))
	return err
}

// ReadAhead sets the read-ahead window of a block device. PID 1 widens it
// on the verity root: the agent pages its large static binary in through
// dm-verity, and fewer, larger reads verify faster than many small ones
// (in a noisy A/B under TCG, 2 MiB instead of the default 128 KiB cut the
// median from "Run /init" to the agent's ready line from about 1.9 s to 1.0 s).
// The window is Config's confguest.readahead_kb (default 2048), read when the
// step runs: Config is filled in by an earlier step of the plan.
type ReadAhead struct {
	Device string
	Config *cmdline.Config
	Sys    string // sysfs mount point; empty means /sys
}

func (r ReadAhead) String() string {
	return fmt.Sprintf("set read-ahead of %s (%s, default %d KiB)", r.Device, cmdline.KeyReadAhead, cmdline.DefaultReadAheadKB)
}

func (r ReadAhead) Run(context.Context) error {
	var st unix.Stat_t
	if err := unix.Stat(r.Device, &st); err != nil {
		return fmt.Errorf("stat %s: %w", r.Device, err)
	}
	sys := r.Sys
	if sys == "" {
		sys = "/sys"
	}
	p := filepath.Join(sys, "dev", "block", fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)), "queue", "read_ahead_kb")
	return os.WriteFile(p, []byte(strconv.Itoa(r.Config.ReadAheadKB)), 0)
}

// VerityTarget is the dm-verity mapping the command line describes.
func VerityTarget(c *cmdline.Config) devmapper.VerityTarget {
	return devmapper.VerityTarget{
		DataDevice: c.Root,
		Verity: verity.Params{
			RootHash: hex.EncodeToString(c.RootHash), Salt: hex.EncodeToString(c.Salt),
			HashOffset: c.HashOffset, DataBlocks: c.DataBlocks,
			DataBlockSize: cmdline.BlockSize, HashBlockSize: cmdline.BlockSize, Algorithm: verity.Algorithm,
		},
		// Verified as strictly as from a worker; faster page-in of the agent.
		TryVerifyInTasklet: true,
	}
}

// MountVerityRoot mounts the verity device's erofs read-only at Target and
// prints "confguest-init: root verified <roothash>".
type MountVerityRoot struct {
	Config *cmdline.Config
	Name   string
	Target string
	Printf func(format string, args ...any)
}

func (m MountVerityRoot) String() string { return "mount verity root" }

func (m MountVerityRoot) Run(ctx context.Context) error {
	dev := filepath.Join(devmapper.MapperDir, m.Name)
	if err := os.MkdirAll(m.Target, 0o755); err != nil {
		return fmt.Errorf("create mount point: %w", err)
	}
	_, err := mount.Mount(dev, m.Target, "erofs", "", unix.MS_RDONLY|unix.MS_NODEV)
	if verr := VerityCheck(m.Name, m.Config); verr != nil {
		if err != nil {
			return fmt.Errorf("%w (%w)", verr, err)
		}
		return verr
	}
	if err != nil {
		return err
	}
	if m.Printf != nil {
		m.Printf("confguest-init: root verified %s\n", hex.EncodeToString(m.Config.RootHash))
	}
	return nil
}

// VerityCheck returns an ErrVerity error when the device called name has
// met a block that fails verification, nil otherwise (also when its status
// cannot be read). PID 1 calls it to explain a failed mount, exec or agent.
func VerityCheck(name string, c *cmdline.Config) error {
	st, err := devmapper.Status(name)
	if err != nil || !st.VerityCorrupted() {
		return nil
	}
	return fmt.Errorf("%w: %s=%s does not match %s=%s: %s", ErrVerity, cmdline.KeyRoot, c.Root,
		cmdline.KeyRootHash, hex.EncodeToString(c.RootHash), rootDiskFix)
}
