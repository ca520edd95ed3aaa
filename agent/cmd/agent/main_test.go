//go:build !benchdirect

package main

import (
	"context"
	"io"
	"math/bits"
	"strings"
	"testing"
)

// The published agent has no test modes: "bench-direct" (built only with
// -tags benchdirect) and any other positional argument is refused before
// anything is served.
func TestNoTestModes(t *testing.T) {
	if len(testModes) != 0 {
		t.Fatalf("testModes = %v in a build without test tags, want none", testModes)
	}
	for _, args := range [][]string{{"bench-direct"}, {"bench-direct", "-n", "1"}, {"-listen", "unix:/nonexistent/x", "extra"}} {
		err := run(context.Background(), args, io.Discard, io.Discard)
		if err == nil || !(strings.Contains(err.Error(), "unexpected arguments") || strings.Contains(err.Error(), "flag provided but not defined")) {
			t.Errorf("run(%q) = %v, want an unexpected-arguments or unknown-flag error", args, err)
		}
	}
}

// The startup figures of the running test binary: its pages are mapped and
// cached (it runs), and its file's block device, if it has one, was read.
func TestMeasureStartup(t *testing.T) {
	s, err := measureStartup("/sys")
	if err != nil {
		t.Skipf("no block device beneath the test binary to measure: %v", err)
	}
	if s.exeBytes == 0 || s.exeMapped == 0 || s.exeCached == 0 || s.exeCached*4096 > s.exeBytes+4095 {
		t.Errorf("measureStartup = %+v: want a binary with pages mapped and cached, no more than its size", s)
	}
	if !strings.HasPrefix(s.String(), "confguest-agent: startup: binary ") {
		t.Errorf("startup line = %q", s.String())
	}
	var set int64
	for _, b := range s.exePages {
		set += int64(bits.OnesCount8(b))
	}
	if want := (s.exeBytes + 4095) / 4096; int64(len(s.exePages)) != (want+7)/8 || set != s.exeCached {
		t.Errorf("exePages: %d bytes with %d bits set, want %d bytes with %d (exeCached) set", len(s.exePages), set, (want+7)/8, s.exeCached)
	}
	t.Log(s)
}

func TestMappedKiB(t *testing.T) {
	smaps := []byte(`00400000-00452000 r-xp 00000000 fd:00 12 /sbin/agent
Size:                328 kB
Rss:                 200 kB
Pss:                 200 kB
00652000-00653000 r--p 00052000 fd:00 12 /sbin/agent
Rss:                   4 kB
00653000-00654000 rw-p 00000000 00:00 0 
Rss:                  64 kB
7ffd-7fff rw-p 00000000 00:00 0                          [stack]
Rss:                  12 kB
`)
	if got := mappedKiB(smaps, "/sbin/agent"); got != 204 {
		t.Errorf("mappedKiB = %d, want 204 (the two mappings of /sbin/agent)", got)
	}
}
