package boot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/u-root/u-root/pkg/mount"
	"golang.org/x/sys/unix"

	"confguest/init/cmdline"
)

// Mount mounts a filesystem. With Mkdir set, the mount point is created
// with that mode first; otherwise it must exist.
type Mount struct {
	Source, Target, FSType, Data string
	Flags                        uintptr
	Mkdir                        os.FileMode
}

func (m Mount) String() string { return fmt.Sprintf("mount %s on %s", m.FSType, m.Target) }

func (m Mount) Run(context.Context) error {
	if m.Mkdir != 0 {
		if err := os.MkdirAll(m.Target, m.Mkdir); err != nil {
			return fmt.Errorf("create mount point: %w", err)
		}
	} else if fi, err := os.Stat(m.Target); err != nil || !fi.IsDir() {
		return fmt.Errorf("%w: %s: add the directory to the root filesystem", ErrNotMountPoint, m.Target)
	}
	_, err := mount.Mount(m.Source, m.Target, m.FSType, m.Data, m.Flags)
	return err
}

// Mkdir creates a directory (and its parents) with a fixed mode.
type Mkdir struct {
	Path string
	Mode os.FileMode
}

func (m Mkdir) String() string { return "create " + m.Path }

func (m Mkdir) Run(context.Context) error {
	if err := os.MkdirAll(m.Path, m.Mode); err != nil {
		return err
	}
	return os.Chmod(m.Path, m.Mode)
}

// Console makes fds 0, 1 and 2 the console when the kernel could not open
// it for us (no /dev/console in the initramfs).
type Console struct{ Path string }

func (c Console) String() string { return "open console " + c.Path }

func (c Console) Run(context.Context) error {
	if _, err := unix.FcntlInt(1, unix.F_GETFD, 0); err == nil {
		return nil // stdout is open: the kernel gave us the console
	}
	fd, err := unix.Open(c.Path, unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return err
	}
	for i := 0; i <= 2; i++ {
		if fd != i {
			if err := unix.Dup2(fd, i); err != nil {
				return err
			}
		}
	}
	if fd > 2 {
		unix.Close(fd)
	}
	return nil
}

// EnableControllers enables every controller of the cgroup2 hierarchy at
// Dir for its children (cgroup.subtree_control), so the agent can limit
// containers' memory, CPU, I/O and pids.
type EnableControllers struct{ Dir string }

func (e EnableControllers) String() string { return "enable cgroup controllers in " + e.Dir }

func (e EnableControllers) Run(context.Context) error {
	b, err := os.ReadFile(filepath.Join(e.Dir, "cgroup.controllers"))
	if err != nil {
		return err
	}
	ctrls := strings.Fields(string(b))
	if len(ctrls) == 0 {
		return nil
	}
	req := "+" + strings.Join(ctrls, " +")
	if err := os.WriteFile(filepath.Join(e.Dir, "cgroup.subtree_control"), []byte(req), 0); err != nil {
		return fmt.Errorf("write %q to cgroup.subtree_control: %w", req, err)
	}
	return nil
}

// SetHostname sets the host name.
type SetHostname struct{ Name string }

func (s SetHostname) String() string { return "set hostname " + s.Name }

func (s SetHostname) Run(context.Context) error { return unix.Sethostname([]byte(s.Name)) }

// ParseCmdline reads the confguest.* parameters into Into and applies the
// log level.
type ParseCmdline struct {
	Path  string
	Into  *cmdline.Config
	Level *slog.LevelVar
}

func (p ParseCmdline) String() string { return "read kernel command line " + p.Path }

func (p ParseCmdline) Run(context.Context) error {
	b, err := os.ReadFile(p.Path)
	if err != nil {
		return err
	}
	c, err := cmdline.Parse(string(b))
	if err != nil {
		return err
	}
	*p.Into = c
	if p.Level != nil {
		p.Level.Set(c.LogLevel)
	}
	return nil
}

// isNotExist reports a missing path, however wrapped.
func isNotExist(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENXIO)
}
