package main

import (
	"context"
	"io"
	"math/bits"
	"os/exec"
	"strings"
	"testing"

	"confguest/build/guestimage"
)

// The agent has no modes but serving and the pod holder: "bench-direct" (the helper's,
// built only with -tags benchdirect) and any other positional argument is refused before
// anything is served.
func TestNoTestModes(t *testing.T) {
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

// The agent links no libcontainer: it runs in its helper, /sbin/libct (agent/libct). This
// keeps the agent's binary, the pages it reads before it is ready and its resident memory
// those of an API server (build/bench/README.md has the figures); a change that imports
// libcontainer (or what only it needs) into the agent again fails here.
func TestAgentLinksNoLibcontainer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-tags", guestimage.AgentTags, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	forbidden := []string{"github.com/opencontainers/runc/", "github.com/opencontainers/cgroups", "github.com/seccomp/", "github.com/godbus/", "github.com/cilium/ebpf"}
	for _, p := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if strings.HasPrefix(p, f) {
				t.Errorf("the agent imports %s: libcontainer and what it needs belong in agent/libct/ops", p)
			}
		}
	}
}
