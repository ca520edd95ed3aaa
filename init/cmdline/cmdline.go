// Package cmdline parses the confguest.* parameters of the kernel command
// line (/proc/cmdline): PID 1 with Parse, the agent with Params, so both
// read one line the same way. The command line is measured into the
// SEV-SNP launch digest, so it is the only configuration the guest trusts.
//
// Parameters (every confguest.* key below; any other confguest.* key is an
// error, as is a key given twice):
//
//	confguest.root=/dev/vda        block device holding the erofs root and its
//	                               appended dm-verity hash tree (required)
//	confguest.roothash=<hex>       dm-verity root hash, SHA-256, 64 hex digits (required)
//	confguest.salt=<hex>           dm-verity salt, hex; empty or "-" for none (required)
//	confguest.datablocks=<n>       number of 4096-byte data blocks covered (required)
//	confguest.hashoffset=<bytes>   byte offset of the verity superblock on the root
//	                               device; the hash tree starts one 4096-byte block
//	                               later (required, a multiple of 4096)
//	confguest.loglevel=<level>     debug | info | warn | error (default info)
//	confguest.tee=<tee>            snp (default): an AMD SEV-SNP guest;
//	                               none: booted without a TEE (development, tests)
//	confguest.readahead_kb=<n>     read-ahead of the verity root in KiB, 0 to 16384
//	                               (default 2048); the boot benchmark boots with 0
//	                               to count the pages the agent touches
//
// Data and hash block sizes are fixed at 4096 bytes and the hash algorithm
// at sha256. Words after a lone "--" belong to init's argv and are not read.
// Double quotes group a value containing spaces, as the kernel does.
package cmdline

import (
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
)

// Prefix starts every parameter this package owns.
const Prefix = "confguest."

// BlockSize is the data and hash block size of confguest verity images.
const BlockSize = 4096

// Parameter names.
const (
	KeyRoot       = "confguest.root"
	KeyRootHash   = "confguest.roothash"
	KeySalt       = "confguest.salt"
	KeyDataBlocks = "confguest.datablocks"
	KeyHashOffset = "confguest.hashoffset"
	KeyLogLevel   = "confguest.loglevel"
	KeyTEE        = "confguest.tee"
	KeyReadAhead  = "confguest.readahead_kb"
)

// DefaultReadAheadKB is the verity root's read-ahead without confguest.readahead_kb.
const DefaultReadAheadKB = 2048

// TEE names the trusted execution environment the guest was booted in.
type TEE string

const (
	TEESNP  TEE = "snp"
	TEENone TEE = "none"
)

// Config is the parsed confguest.* part of a kernel command line.
type Config struct {
	Root       string // root block device, e.g. /dev/vda
	RootHash   []byte // SHA-256 dm-verity root hash
	Salt       []byte // may be empty
	DataBlocks uint64
	HashOffset uint64 // bytes; verity superblock offset
	LogLevel   slog.Level
	TEE        TEE
	// ReadAheadKB is the verity root's read-ahead window.
	ReadAheadKB int
}

// String renders c as the confguest.* part of a command line; Parse of the
// result gives c back.
func (c Config) String() string {
	salt := hex.EncodeToString(c.Salt)
	if salt == "" {
		salt = "-"
	}
	s := fmt.Sprintf("%s=%s %s=%s %s=%s %s=%d %s=%d %s=%s %s=%s",
		KeyRoot, c.Root, KeyRootHash, hex.EncodeToString(c.RootHash), KeySalt, salt,
		KeyDataBlocks, c.DataBlocks, KeyHashOffset, c.HashOffset,
		KeyLogLevel, levelName(c.LogLevel), KeyTEE, c.TEE)
	if c.ReadAheadKB != DefaultReadAheadKB {
		s += fmt.Sprintf(" %s=%d", KeyReadAhead, c.ReadAheadKB)
	}
	return s
}

func levelName(l slog.Level) string {
	return strings.ToLower(l.String())
}

// fix is appended to errors about the image parameters.
const fix = "boot with the command line the image build wrote (out/cmdline)"

// Parse reads the confguest.* parameters from a kernel command line, as
// PID 1 does: the root parameters are required.
func Parse(cmdline string) (Config, error) {
	c, seen, err := parse(cmdline)
	if err != nil {
		return Config{}, err
	}
	for _, key := range []string{KeyRoot, KeyRootHash, KeySalt, KeyDataBlocks, KeyHashOffset} {
		if _, ok := seen[key]; !ok {
			return Config{}, fmt.Errorf("%w: %s: %s", ErrMissing, key, fix)
		}
	}
	if c.HashOffset < c.DataBlocks*BlockSize {
		return Config{}, fmt.Errorf("%w: %s=%d lies inside the %d data blocks (%d bytes): %s",
			ErrInvalid, KeyHashOffset, c.HashOffset, c.DataBlocks, c.DataBlocks*BlockSize, fix)
	}
	return c, nil
}

// Params reads the confguest.* parameters from a kernel command line
// with the same rules as Parse (unknown keys, keys given twice and bad
// values are errors; nothing after a lone "--" is read) but requires
// none of them: what the agent reads (it needs confguest.tee; PID 1 has
// refused a line without the root parameters before starting it).
func Params(cmdline string) (Config, error) {
	c, _, err := parse(cmdline)
	return c, err
}

// parse reads and checks every confguest.* parameter of cmdline and
// returns the keys it saw.
func parse(cmdline string) (Config, map[string]string, error) {
	words, err := split(cmdline)
	if err != nil {
		return Config{}, nil, err
	}
	seen := map[string]string{}
	var order []string
	for _, w := range words {
		if w == "--" {
			break
		}
		if !strings.HasPrefix(w, Prefix) {
			continue
		}
		key, val, ok := strings.Cut(w, "=")
		if !ok {
			return Config{}, nil, fmt.Errorf("%w: %q has no value: write %s=<value>", ErrSyntax, w, w)
		}
		if _, dup := seen[key]; dup {
			return Config{}, nil, fmt.Errorf("%w: %s given twice: keep one", ErrDuplicate, key)
		}
		seen[key] = val
		order = append(order, key)
	}
	c := Config{LogLevel: slog.LevelInfo, TEE: TEESNP, ReadAheadKB: DefaultReadAheadKB}
	for _, key := range order {
		if err := c.set(key, seen[key]); err != nil {
			return Config{}, nil, err
		}
	}
	return c, seen, nil
}

func (c *Config) set(key, val string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: %s=%q: %s", ErrInvalid, key, val, why)
	}
	switch key {
	case KeyRoot:
		if !strings.HasPrefix(val, "/dev/") || len(val) <= len("/dev/") || strings.Contains(val, "..") {
			return bad("want a device path under /dev, e.g. /dev/vda")
		}
		c.Root = val
	case KeyRootHash:
		h, err := hex.DecodeString(val)
		if err != nil || len(h) != 32 {
			return bad("want 64 hex digits (the SHA-256 verity root hash); " + fix)
		}
		c.RootHash = h
	case KeySalt:
		if val == "-" || val == "" {
			c.Salt = nil
			return nil
		}
		s, err := hex.DecodeString(val)
		if err != nil || len(s) > 256 {
			return bad("want at most 256 bytes in hex, or - for no salt; " + fix)
		}
		c.Salt = s
	case KeyDataBlocks:
		n, err := strconv.ParseUint(val, 10, 64)
		if err != nil || n == 0 || n > 1<<40 {
			return bad("want a positive decimal block count; " + fix)
		}
		c.DataBlocks = n
	case KeyHashOffset:
		n, err := strconv.ParseUint(val, 10, 64)
		if err != nil || n%BlockSize != 0 || n > 1<<52 {
			return bad("want a decimal byte offset, a multiple of 4096; " + fix)
		}
		c.HashOffset = n
	case KeyLogLevel:
		switch val {
		case "debug":
			c.LogLevel = slog.LevelDebug
		case "info":
			c.LogLevel = slog.LevelInfo
		case "warn":
			c.LogLevel = slog.LevelWarn
		case "error":
			c.LogLevel = slog.LevelError
		default:
			return bad("want debug, info, warn or error")
		}
	case KeyTEE:
		switch TEE(val) {
		case TEESNP, TEENone:
			c.TEE = TEE(val)
		default:
			return bad("want snp or none")
		}
	case KeyReadAhead:
		n, err := strconv.Atoi(val)
		if err != nil || n < 0 || n > 16384 {
			return bad("want a decimal number of KiB from 0 to 16384")
		}
		c.ReadAheadKB = n
	default:
		return fmt.Errorf("%w: %s: known keys are %s, %s, %s, %s, %s, %s, %s, %s", ErrUnknownKey, key,
			KeyRoot, KeyRootHash, KeySalt, KeyDataBlocks, KeyHashOffset, KeyLogLevel, KeyTEE, KeyReadAhead)
	}
	return nil
}

// split breaks a command line into words as the kernel's next_arg does:
// whitespace separates words, double quotes group (and are dropped).
func split(s string) ([]string, error) {
	var words []string
	var b strings.Builder
	inWord, quoted := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			inWord = true
		case !quoted && (r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f'):
			if inWord {
				words = append(words, b.String())
				b.Reset()
				inWord = false
			}
		default:
			b.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("%w: unterminated double quote", ErrSyntax)
	}
	if inWord {
		words = append(words, b.String())
	}
	return words, nil
}
