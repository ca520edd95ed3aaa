package measure

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// GUIDs of QEMU's SEV hashes table (QEMU target/i386/sev.c, read by OVMF's
// OvmfPkg/AmdSev/BlobVerifierLibSevHashes).
var (
	guidHashTableHeader = mustGUID("9438d606-4f22-4cc9-b479-a793d411fd21")
	guidHashCmdline     = mustGUID("97d02dd8-bd20-4c94-aa78-e7714d36ab2a")
	guidHashInitrd      = mustGUID("44baf731-3a2f-4bd7-9af1-41e29169781d")
	guidHashKernel      = mustGUID("4de79437-abd2-427f-b835-d5b172d2045b")
)

const (
	hashEntrySize = 16 + 2 + sha256.Size                   // GUID, length, SHA-256
	hashTableSize = 16 + 2 + 3*hashEntrySize               // GUID, length, cmdline, initrd, kernel
	hashTablePad  = (hashTableSize+15)&^15 - hashTableSize // QEMU pads the table to 16 bytes
)

// emptySHA256 is the initrd digest of a launch without an initrd.
var emptySHA256 = sha256.Sum256(nil)

// KernelHashes are the SHA-256 digests QEMU writes into the SEV hashes table when it
// boots a kernel directly (-kernel, -initrd, -append with kernel-hashes=on).
type KernelHashes struct {
	Cmdline [sha256.Size]byte // of the command line with its trailing NUL
	Initrd  [sha256.Size]byte // of the initrd; of nothing when there is none
	Kernel  [sha256.Size]byte // of the kernel image file
}

// CmdlineHash returns the hashes table's digest of a kernel command line: SHA-256 of its
// bytes and a terminating NUL. An empty command line hashes as a lone NUL.
func CmdlineHash(cmdline string) [sha256.Size]byte {
	h := sha256.New()
	io.WriteString(h, cmdline)
	h.Write([]byte{0})
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// HashFiles computes the hashes table for the kernel and initrd files and the command
// line. initrd may be "" for a launch without one.
func HashFiles(kernel, initrd, cmdline string) (KernelHashes, error) {
	var (
		k   KernelHashes
		err error
	)
	if k.Kernel, _, err = fileSHA256(kernel); err != nil {
		return k, fmt.Errorf("hash kernel: %w", err)
	}
	if initrd == "" {
		k.Initrd = emptySHA256
	} else if k.Initrd, _, err = fileSHA256(initrd); err != nil {
		return k, fmt.Errorf("hash initrd: %w", err)
	}
	k.Cmdline = CmdlineHash(cmdline)
	return k, nil
}

// fileSHA256 streams the file at path through SHA-256 and returns the digest and size.
func fileSHA256(path string) ([sha256.Size]byte, int64, error) {
	var sum [sha256.Size]byte
	f, err := os.Open(path)
	if err != nil {
		return sum, 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return sum, 0, fmt.Errorf("read %s: %w", path, err)
	}
	h.Sum(sum[:0])
	return sum, n, nil
}

// table returns the padded hashes table as QEMU lays it out.
func (k *KernelHashes) table() []byte {
	b := make([]byte, 0, hashTableSize+hashTablePad)
	b = append(b, guidHashTableHeader[:]...)
	b = binary.LittleEndian.AppendUint16(b, hashTableSize)
	for _, e := range []struct {
		guid efiGUID
		sum  *[sha256.Size]byte
	}{{guidHashCmdline, &k.Cmdline}, {guidHashInitrd, &k.Initrd}, {guidHashKernel, &k.Kernel}} {
		b = append(b, e.guid[:]...)
		b = binary.LittleEndian.AppendUint16(b, hashEntrySize)
		b = append(b, e.sum[:]...)
	}
	return append(b, make([]byte, hashTablePad)...)
}

// page returns the 4 KiB page holding the table at offset within it.
func (k *KernelHashes) page(offset int) ([]byte, error) {
	t := k.table()
	if offset < 0 || offset+len(t) > PageSize {
		return nil, fmt.Errorf("hashes table at page offset 0x%x does not fit in its page: %w", offset, ErrOutOfRange)
	}
	p := make([]byte, PageSize)
	copy(p[offset:], t)
	return p, nil
}
