package cmdline

import (
	"bytes"
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

const (
	hash  = "3fa1c2d4e5f60718293a4b5c6d7e8f900112233445566778899aabbccddeeff0"
	salt  = "a1b2c3"
	valid = "console=ttyS0 panic=-1 confguest.root=/dev/vda confguest.roothash=" + hash +
		" confguest.salt=" + salt + " confguest.datablocks=2560 confguest.hashoffset=10485760 confguest.loglevel=info"
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("hex.DecodeString(%q): %v", s, err)
	}
	return b
}

func TestParse(t *testing.T) {
	base := Config{
		Root: "/dev/vda", RootHash: mustHex(t, hash), Salt: mustHex(t, salt),
		DataBlocks: 2560, HashOffset: 10485760, LogLevel: slog.LevelInfo, TEE: TEESNP, ReadAheadKB: DefaultReadAheadKB,
	}
	with := func(f func(*Config)) Config { c := base; f(&c); return c }
	tests := []struct {
		name string
		in   string
		want Config
	}{
		{"pipeline command line", valid, base},
		{"tee none and debug", strings.Replace(valid, "loglevel=info", "loglevel=debug confguest.tee=none", 1),
			with(func(c *Config) { c.LogLevel = slog.LevelDebug; c.TEE = TEENone })},
		{"no salt", strings.Replace(valid, "confguest.salt="+salt, "confguest.salt=-", 1), with(func(c *Config) { c.Salt = nil })},
		{"empty salt", strings.Replace(valid, "confguest.salt="+salt, "confguest.salt=", 1), with(func(c *Config) { c.Salt = nil })},
		{"tee snp explicit", valid + " confguest.tee=snp", with(func(c *Config) {})},
		{"quoted value and tabs", "quiet\tconfguest.root=\"/dev/vdb\"  " + strings.TrimPrefix(valid, "console=ttyS0 panic=-1 confguest.root=/dev/vda"), with(func(c *Config) { c.Root = "/dev/vdb" })},
		{"init args after -- are not read", valid + " -- confguest.bogus=1", base},
		{"uppercase hex hash", strings.Replace(valid, hash, strings.ToUpper(hash), 1), base},
		{"trailing newline as in /proc/cmdline", valid + "\n", base},
		{"other dotted parameters ignored", valid + " virtio_blk.queue_depth=4 confguestx.foo=1", base},
		{"read-ahead off", valid + " confguest.readahead_kb=0", with(func(c *Config) { c.ReadAheadKB = 0 })},
		{"read-ahead at its bound", valid + " confguest.readahead_kb=16384", with(func(c *Config) { c.ReadAheadKB = 16384 })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.in)
			if err != nil {
				t.Fatalf("Parse(%q) error %v", tc.in, err)
			}
			if !equal(got, tc.want) {
				t.Errorf("Parse(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func equal(a, b Config) bool {
	return a.Root == b.Root && bytes.Equal(a.RootHash, b.RootHash) && bytes.Equal(a.Salt, b.Salt) &&
		a.DataBlocks == b.DataBlocks && a.HashOffset == b.HashOffset && a.LogLevel == b.LogLevel && a.TEE == b.TEE &&
		a.ReadAheadKB == b.ReadAheadKB
}

func TestParseErrors(t *testing.T) {
	repl := func(old, new string) string { return strings.Replace(valid, old, new, 1) }
	tests := []struct {
		name    string
		in      string
		want    error
		mention string
	}{
		{"unknown key", valid + " confguest.rootfs=/dev/vdb", ErrUnknownKey, "confguest.rootfs"},
		{"unknown key without value", valid + " confguest.debug", ErrSyntax, "confguest.debug"},
		{"duplicate key", valid + " confguest.root=/dev/vdb", ErrDuplicate, "confguest.root given twice"},
		{"missing root", repl("confguest.root=/dev/vda ", ""), ErrMissing, "confguest.root"},
		{"missing roothash", repl("confguest.roothash="+hash+" ", ""), ErrMissing, "confguest.roothash"},
		{"missing salt", repl("confguest.salt="+salt+" ", ""), ErrMissing, "confguest.salt"},
		{"missing datablocks", repl("confguest.datablocks=2560 ", ""), ErrMissing, "confguest.datablocks"},
		{"missing hashoffset", repl("confguest.hashoffset=10485760 ", ""), ErrMissing, "confguest.hashoffset"},
		{"empty command line", "", ErrMissing, "confguest.root"},
		{"root not a device", repl("/dev/vda", "vda"), ErrInvalid, "/dev"},
		{"root escapes /dev", repl("/dev/vda", "/dev/../etc"), ErrInvalid, "confguest.root"},
		{"short hash", repl(hash, hash[:62]), ErrInvalid, "64 hex digits"},
		{"non-hex hash", repl(hash, "zz"+hash[2:]), ErrInvalid, "64 hex digits"},
		{"odd salt", repl("salt="+salt, "salt=abc"), ErrInvalid, "confguest.salt"},
		{"zero datablocks", repl("datablocks=2560", "datablocks=0"), ErrInvalid, "confguest.datablocks"},
		{"negative datablocks", repl("datablocks=2560", "datablocks=-1"), ErrInvalid, "confguest.datablocks"},
		{"unaligned hashoffset", repl("hashoffset=10485760", "hashoffset=10485761"), ErrInvalid, "multiple of 4096"},
		{"hashoffset inside data", repl("hashoffset=10485760", "hashoffset=4096"), ErrInvalid, "inside the 2560 data blocks"},
		{"bad loglevel", repl("loglevel=info", "loglevel=loud"), ErrInvalid, "debug, info, warn or error"},
		{"bad tee", valid + " confguest.tee=tdx", ErrInvalid, "snp or none"},
		{"negative read-ahead", valid + " confguest.readahead_kb=-1", ErrInvalid, "0 to 16384"},
		{"read-ahead too large", valid + " confguest.readahead_kb=16385", ErrInvalid, "0 to 16384"},
		{"read-ahead not a number", valid + " confguest.readahead_kb=2M", ErrInvalid, "confguest.readahead_kb"},
		{"unterminated quote", valid + ` foo="bar`, ErrSyntax, "quote"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.in)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("Parse(%q) = %+v, %v; want error %v mentioning %q", tc.in, got, err, tc.want, tc.mention)
			}
		})
	}
}

func TestStringRoundTrip(t *testing.T) {
	tests := []Config{
		{Root: "/dev/vda", RootHash: mustHex(t, hash), Salt: mustHex(t, salt), DataBlocks: 1, HashOffset: 4096, LogLevel: slog.LevelWarn, TEE: TEENone, ReadAheadKB: DefaultReadAheadKB},
		{Root: "/dev/nvme0n1", RootHash: mustHex(t, hash), DataBlocks: 9, HashOffset: 65536, LogLevel: slog.LevelDebug, TEE: TEESNP},
	}
	for _, c := range tests {
		got, err := Parse(c.String())
		if err != nil || !equal(got, c) {
			t.Errorf("Parse(%q) = %+v, %v, want %+v", c.String(), got, err, c)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(valid)
	f.Add(valid + " confguest.tee=none -- x")
	f.Add(`confguest.root="/dev/v da" confguest.salt=- "`)
	f.Add("confguest.")
	f.Fuzz(func(t *testing.T, in string) {
		c, err := Parse(in)
		if err != nil {
			if !errors.Is(err, ErrUnknownKey) && !errors.Is(err, ErrMissing) && !errors.Is(err, ErrInvalid) &&
				!errors.Is(err, ErrDuplicate) && !errors.Is(err, ErrSyntax) {
				t.Fatalf("Parse(%q) error %v is none of the package's sentinels", in, err)
			}
			return
		}
		// An accepted command line yields a usable verity configuration ...
		if !strings.HasPrefix(c.Root, "/dev/") || len(c.RootHash) != 32 || c.DataBlocks == 0 ||
			c.HashOffset%BlockSize != 0 || c.HashOffset < c.DataBlocks*BlockSize {
			t.Fatalf("Parse(%q) accepted an unusable config %+v", in, c)
		}
		// ... that survives rendering and re-parsing, unless the root path
		// needed quotes (String does not quote).
		if strings.ContainsAny(c.Root, " \t\n\r\v\f\"") {
			return
		}
		again, err := Parse(c.String())
		if err != nil || !equal(again, c) {
			t.Fatalf("Parse(String(Parse(%q))) = %+v, %v, want %+v", in, again, err, c)
		}
	})
}

// TestParams checks the agent's view of the command line: the same rules
// as Parse, no parameter required.
func TestParams(t *testing.T) {
	tests := []struct {
		in      string
		want    TEE
		wantErr error
	}{
		{"console=ttyS0", TEESNP, nil},
		{"", TEESNP, nil},
		{"console=ttyS0 confguest.tee=none quiet", TEENone, nil},
		{valid + " confguest.tee=none", TEENone, nil},
		{"xconfguest.tee=none", TEESNP, nil},
		{"init=/sbin/init -- confguest.tee=none", TEESNP, nil},
		{"confguest.tee=none confguest.tee=snp", "", ErrDuplicate},
		{"confguest.tee=snp confguest.tee=none", "", ErrDuplicate},
		{"confguest.tee=tdx", "", ErrInvalid},
		{"confguest.tee", "", ErrSyntax},
		{"confguest.teee=none", "", ErrUnknownKey},
		{`confguest.tee="none`, "", ErrSyntax},
	}
	for _, tc := range tests {
		c, err := Params(tc.in)
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("Params(%q) = %v, %v, want %v", tc.in, c.TEE, err, tc.wantErr)
			}
			continue
		}
		if err != nil || c.TEE != tc.want {
			t.Errorf("Params(%q) = %q, %v, want %q", tc.in, c.TEE, err, tc.want)
		}
	}
}
