package devmapper

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
)

// Layout of struct dm_ioctl and struct dm_target_spec (linux/dm-ioctl.h).
// layout_unsafe_test.go checks these offsets against golang.org/x/sys/unix.
const (
	headerSize     = 312 // sizeof(struct dm_ioctl)
	targetSpecSize = 40  // sizeof(struct dm_target_spec)
	nameLen        = 128
	uuidLen        = 129
	maxTypeName    = 16

	offVersion     = 0
	offDataSize    = 12
	offDataStart   = 16
	offTargetCount = 20
	offOpenCount   = 24
	offFlags       = 28
	offEventNr     = 32
	offDev         = 40
	offName        = 48
	offUUID        = 176

	// The interface version we speak; the kernel accepts any minor <= its own.
	versionMajor = 4
	versionMinor = 0
)

// Flags of struct dm_ioctl.
const (
	flagReadOnly        = 1 << 0
	flagSuspend         = 1 << 1
	flagActivePresent   = 1 << 5
	flagInactivePresent = 1 << 6
	flagBufferFull      = 1 << 8
)

// Target is one line of a device-mapper table.
type Target struct {
	Start  uint64 // first sector
	Length uint64 // in sectors
	Type   string // "verity", "linear", ...
	Params string // target-specific parameters
}

func (t Target) String() string {
	return fmt.Sprintf("%d %d %s %s", t.Start, t.Length, t.Type, t.Params)
}

// header is the part of struct dm_ioctl we read and write.
type header struct {
	DataSize    uint32
	DataStart   uint32
	TargetCount uint32
	OpenCount   int32
	Flags       uint32
	EventNr     uint32
	Dev         uint64
	Name        string
	UUID        string
}

func validName(name string) error {
	if name == "" || len(name) >= nameLen || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return fmt.Errorf("%w: %q (1-127 bytes, no '/')", ErrInvalidName, name)
	}
	return nil
}

func align8(n int) int { return (n + 7) &^ 7 }

// encode builds an ioctl buffer: the header followed by payload, with
// DataSize covering at least minSize bytes so the kernel has room to reply.
func encode(h header, payload []byte, minSize int) []byte {
	size := headerSize + len(payload)
	if size < minSize {
		size = minSize
	}
	buf := make([]byte, size)
	le := binary.NativeEndian
	le.PutUint32(buf[offVersion:], versionMajor)
	le.PutUint32(buf[offVersion+4:], versionMinor)
	le.PutUint32(buf[offVersion+8:], 0)
	le.PutUint32(buf[offDataSize:], uint32(size))
	le.PutUint32(buf[offDataStart:], headerSize)
	le.PutUint32(buf[offTargetCount:], h.TargetCount)
	le.PutUint32(buf[offOpenCount:], uint32(h.OpenCount))
	le.PutUint32(buf[offFlags:], h.Flags)
	le.PutUint32(buf[offEventNr:], h.EventNr)
	le.PutUint64(buf[offDev:], h.Dev)
	copy(buf[offName:offName+nameLen-1], h.Name)
	copy(buf[offUUID:offUUID+uuidLen-1], h.UUID)
	copy(buf[headerSize:], payload)
	return buf
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func decodeHeader(buf []byte) (header, error) {
	if len(buf) < headerSize {
		return header{}, fmt.Errorf("%w: %d bytes, want at least %d", ErrShortReply, len(buf), headerSize)
	}
	le := binary.NativeEndian
	return header{
		DataSize:    le.Uint32(buf[offDataSize:]),
		DataStart:   le.Uint32(buf[offDataStart:]),
		TargetCount: le.Uint32(buf[offTargetCount:]),
		OpenCount:   int32(le.Uint32(buf[offOpenCount:])),
		Flags:       le.Uint32(buf[offFlags:]),
		EventNr:     le.Uint32(buf[offEventNr:]),
		Dev:         le.Uint64(buf[offDev:]),
		Name:        cstring(buf[offName : offName+nameLen]),
		UUID:        cstring(buf[offUUID : offUUID+uuidLen]),
	}, nil
}

// encodeTable lays out targets for DM_TABLE_LOAD: each dm_target_spec is
// followed by its NUL-terminated parameters, padded to 8 bytes; "next" is the
// offset from this spec to the following one.
func encodeTable(targets []Target) ([]byte, error) {
	var out []byte
	le := binary.NativeEndian
	for i, t := range targets {
		if t.Type == "" || len(t.Type) >= maxTypeName || strings.ContainsRune(t.Type, 0) {
			return nil, fmt.Errorf("%w: target %d type %q", ErrInvalidTarget, i, t.Type)
		}
		if strings.ContainsRune(t.Params, 0) {
			return nil, fmt.Errorf("%w: target %d parameters contain NUL", ErrInvalidTarget, i)
		}
		if t.Length == 0 {
			return nil, fmt.Errorf("%w: target %d has length 0", ErrInvalidTarget, i)
		}
		n := align8(targetSpecSize + len(t.Params) + 1)
		spec := make([]byte, n)
		le.PutUint64(spec[0:], t.Start)
		le.PutUint64(spec[8:], t.Length)
		le.PutUint32(spec[20:], uint32(n))
		copy(spec[24:24+maxTypeName], t.Type)
		copy(spec[targetSpecSize:], t.Params)
		out = append(out, spec...)
	}
	return out, nil
}

// decodeTargets reads the status or table the kernel wrote after the header.
// In replies "next" is the offset from the start of the data area.
func decodeTargets(buf []byte, h header) ([]Target, error) {
	if int(h.DataStart) > len(buf) || int(h.DataSize) > len(buf) || h.DataStart > h.DataSize {
		return nil, fmt.Errorf("%w: data start %d, size %d, buffer %d", ErrShortReply, h.DataStart, h.DataSize, len(buf))
	}
	data := buf[h.DataStart:h.DataSize]
	le := binary.NativeEndian
	var targets []Target
	off := 0
	for i := uint32(0); i < h.TargetCount; i++ {
		if off+targetSpecSize > len(data) {
			return nil, fmt.Errorf("%w: target %d at offset %d past %d bytes", ErrShortReply, i, off, len(data))
		}
		spec := data[off:]
		t := Target{
			Start:  le.Uint64(spec[0:]),
			Length: le.Uint64(spec[8:]),
			Type:   cstring(spec[24 : 24+maxTypeName]),
			Params: cstring(spec[targetSpecSize:]),
		}
		targets = append(targets, t)
		next := int(le.Uint32(spec[20:]))
		if next <= off && i+1 < h.TargetCount {
			return nil, fmt.Errorf("%w: target %d next offset %d does not advance", ErrShortReply, i, next)
		}
		off = next
	}
	return targets, nil
}
