package guestimage

import (
	"context"
	"debug/buildinfo"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
)

// goBinary describes one Go program linked into the guest.
type goBinary struct {
	name    string // artifact name, e.g. "init"
	pkg     string // main package, e.g. "./init/cmd/init"
	cgo     bool   // static cgo link (libcontainer's nsenter, libseccomp)
	tags    string
	gcflags string // -gcflags (pattern=flags)
	symbols bool   // keep the symbol table and DWARF (for a size breakdown; never in the image)
}

// AgentTags are the agent's build tags: the pure-Go resolver and user lookup. The agent
// is pure Go and static; libcontainer runs in its helper, /sbin/libct (agent/libct).
const AgentTags = "netgo osusergo"

// LibctTags are the helper's: as the agent's, plus libseccomp (a spec's linux.seccomp
// works) and libcontainer without CRIU (runc_nocriu): the guest never checkpoints or
// restores, and leaving the CRIU client and its protobuf messages out makes the binary
// 0.68 MB smaller, less to audit and less to page in through dm-verity.
const LibctTags = AgentTags + " seccomp runc_nocriu"

// AgentGCFlags compiles the agent and its helper, the runtime and every package they
// import without inlining. Inlining copies a function's body into each caller: without it
// the stripped agent (then with libcontainer in it) was 0.99 MB smaller (12.21 -> 11.21
// MB), 8 % less to verify through dm-verity, page in and keep resident (the agent's
// resident memory is mostly its own mapped pages). The cost is a call where a body was
// copied, also in the runtime's allocator and collector, and the escape analysis that
// inlining enables: a value a callee would have kept on the caller's stack may go to the
// heap. The agent mostly waits on system calls, vsock and its containers;
// build/bench/README.md has its container cycle time and memory both ways. One pattern,
// so that the binary's build information (go version -m, manifest.json) records the whole
// setting.
const AgentGCFlags = "all=-l"

// The guest's Go programs. The helper needs cgo for libcontainer's nsenter and links
// libseccomp statically; init and the agent are pure Go.
var guestBinaries = []goBinary{
	{name: "init", pkg: "./init/cmd/init"},
	agentBinary(),
	libctBinary(),
}

// reproducibleEnv is the fixed environment for guest builds: no host-specific flags,
// paths or toolchain switches leak into the binaries.
func reproducibleEnv(cgo bool) []string {
	env := []string{
		"GOOS=linux", "GOARCH=amd64", "GOAMD64=v1", "GOTOOLCHAIN=local",
		"GOFLAGS=-trimpath -buildvcs=false", "GOEXPERIMENT=", "GODEBUG=",
		"CGO_CFLAGS=-O2", "CGO_LDFLAGS=", "LC_ALL=C", "TZ=UTC",
	}
	if cgo {
		env = append(env, "CGO_ENABLED=1", "CC=gcc")
	} else {
		env = append(env, "CGO_ENABLED=0")
	}
	// Keep what the go command needs to find its caches and the module proxy.
	for _, k := range []string{"PATH", "HOME", "GOPATH", "GOMODCACHE", "GOCACHE", "GOPROXY", "GONOSUMDB", "GOSUMDB", "GOPRIVATE", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// agentBinary is the agent as the image builds it, with extraTags added to AgentTags.
func agentBinary(extraTags ...string) goBinary {
	return goBinary{name: "agent", pkg: "./agent/cmd/agent",
		tags: strings.Join(append([]string{AgentTags}, extraTags...), " "), gcflags: AgentGCFlags}
}

// libctBinary is the agent's libcontainer helper as the image builds it, with extraTags
// added to LibctTags.
func libctBinary(extraTags ...string) goBinary {
	return goBinary{name: "libct", pkg: "./agent/cmd/libct", cgo: true,
		tags: strings.Join(append([]string{LibctTags}, extraTags...), " "), gcflags: AgentGCFlags}
}

// BuildAgent builds the agent from the module at srcDir into out as the image builds it
// (its tags, compiler flags, static link and environment), with extraTags added to
// AgentTags. Tests that measure or run an agent of their own build it with this.
func BuildAgent(ctx context.Context, srcDir, out string, extraTags ...string) error {
	return buildGo(ctx, srcDir, agentBinary(extraTags...), out)
}

// BuildLibct builds the agent's libcontainer helper from the module at srcDir into out as
// the image builds it, with extraTags added to LibctTags.
func BuildLibct(ctx context.Context, srcDir, out string, extraTags ...string) error {
	return buildGo(ctx, srcDir, libctBinary(extraTags...), out)
}

// BuildAgentWithSymbols builds the image's agent as BuildAgent does but keeps its symbol
// table and DWARF, which a breakdown by package reads (build/bench/agentsize); the code and
// data are those of the image's agent.
func BuildAgentWithSymbols(ctx context.Context, srcDir, out string) error {
	b := agentBinary()
	b.symbols = true
	return buildGo(ctx, srcDir, b, out)
}

// buildGo builds b from the module at srcDir into out.
func buildGo(ctx context.Context, srcDir string, b goBinary, out string) error {
	ldflags := "-s -w -buildid="
	if b.symbols {
		ldflags = "-buildid="
	}
	if b.cgo {
		ldflags += " -extldflags -static"
	}
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags=" + ldflags, "-o", out}
	if b.gcflags != "" {
		args = append(args, "-gcflags="+b.gcflags)
	}
	if b.tags != "" {
		args = append(args, "-tags", b.tags)
	}
	args = append(args, b.pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = srcDir
	cmd.Env = reproducibleEnv(b.cgo)
	if outp, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", b.pkg, err, strings.TrimSpace(string(outp)))
	}
	return nil
}

// GoModule is one module linked into a guest binary, from the binary's build info.
type GoModule struct {
	Path    string `json:"path"`
	Version string `json:"version"`
	Sum     string `json:"sum,omitempty"`
}

// GoBinaryInputs lists what one guest binary was built from.
type GoBinaryInputs struct {
	Binary    string     `json:"binary"`
	GoVersion string     `json:"go_version"`
	Settings  []string   `json:"settings"`
	Modules   []GoModule `json:"modules"`
}

// readBuildInputs reads the Go version, build settings and modules from a binary.
func readBuildInputs(name, path string) (GoBinaryInputs, error) {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return GoBinaryInputs{}, fmt.Errorf("read build info of %s: %w", path, err)
	}
	in := GoBinaryInputs{Binary: name, GoVersion: bi.GoVersion}
	for _, s := range bi.Settings {
		in.Settings = append(in.Settings, s.Key+"="+s.Value)
	}
	for _, d := range bi.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		in.Modules = append(in.Modules, GoModule{Path: d.Path, Version: d.Version, Sum: d.Sum})
	}
	sort.Slice(in.Modules, func(i, j int) bool { return in.Modules[i].Path < in.Modules[j].Path })
	return in, nil
}
