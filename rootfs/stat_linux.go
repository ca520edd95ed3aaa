package rootfs

import (
	"io/fs"
	"os"
	"syscall"
)

// inode is what Build needs from lstat beyond fs.FileInfo.
type inode struct {
	dev, ino uint64
	nlink    uint64
	uid, gid uint32
	rdev     uint64
}

func inodeOf(fi fs.FileInfo) inode {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return inode{}
	}
	return inode{dev: st.Dev, ino: st.Ino, nlink: st.Nlink, uid: st.Uid, gid: st.Gid, rdev: st.Rdev}
}

// mknod recreates a device node, fifo or socket with the given type and
// permission bits.
func mknod(path string, mode fs.FileMode, rdev uint64) error {
	var t uint32
	switch {
	case mode&fs.ModeCharDevice != 0:
		t = syscall.S_IFCHR
	case mode&fs.ModeDevice != 0:
		t = syscall.S_IFBLK
	case mode&fs.ModeNamedPipe != 0:
		t = syscall.S_IFIFO
	case mode&fs.ModeSocket != 0:
		t = syscall.S_IFSOCK
	}
	if err := syscall.Mknod(path, t|uint32(mode.Perm()), int(rdev)); err != nil {
		return &os.PathError{Op: "mknod", Path: path, Err: err}
	}
	return nil
}
