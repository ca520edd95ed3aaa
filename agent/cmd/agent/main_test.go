package main

import (
	"context"
	"io"
	"math/bits"
	"os"
	"os/exec"
	"path/filepath"
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
	if err := s.readMapped(); err != nil {
		t.Fatal(err)
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

// The agent links no libcontainer: it runs in its helper, /sbin/libct (agent/libct). Nor
// does it link the protobuf runtime: its side of the API is agent/api/v1/wire, served by
// agent/ttrpcserver. This keeps the agent's binary, the pages it reads before it is ready
// and its resident memory those of a small API server (build/bench/README.md has the
// figures); a change that imports either again fails here.
func TestAgentLinksNoLibcontainerNorProtobuf(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-tags", guestimage.AgentTags, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	forbidden := map[string]string{
		"github.com/opencontainers/runc/":   "libcontainer and what it needs belong in agent/libct/ops",
		"github.com/opencontainers/cgroups": "libcontainer and what it needs belong in agent/libct/ops",
		"github.com/seccomp/":               "libcontainer and what it needs belong in agent/libct/ops",
		"github.com/godbus/":                "libcontainer and what it needs belong in agent/libct/ops",
		"github.com/cilium/ebpf":            "libcontainer and what it needs belong in agent/libct/ops",
		"google.golang.org/protobuf":        "the agent's messages are agent/api/v1/wire's, which encode themselves",
		"google.golang.org/grpc":            "status codes are agent/ttrpcserver's",
		"github.com/containerd/ttrpc":       "the agent serves with agent/ttrpcserver",
	}
	for _, p := range strings.Fields(string(out)) {
		for prefix, why := range forbidden {
			if strings.HasPrefix(p, prefix) {
				t.Errorf("the agent imports %s: %s", p, why)
			}
		}
	}
}

// agent/mainstack grows the main goroutine's stack before any other package initializes:
// the agent built as the image builds it, run with GODEBUG=inittrace=1, initializes it
// first after the runtime's own packages.
func TestMainstackInitializesFirst(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "agent")
	if err := guestimage.BuildAgent(context.Background(), "../../..", bin); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-h")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, _ := cmd.CombinedOutput() // -h exits 2 after the usage
	var order []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[0] == "init" && strings.HasPrefix(f[2], "@") {
			order = append(order, f[1])
		}
	}
	for _, p := range order {
		if p == "runtime" || strings.HasPrefix(p, "internal/") {
			continue
		}
		if p != "confguest/agent/mainstack" {
			t.Errorf("the first package initialized after the runtime is %s, want confguest/agent/mainstack (order: %v)", p, order)
		}
		return
	}
	t.Fatalf("no package initializers in the agent's inittrace:\n%s", out)
}
