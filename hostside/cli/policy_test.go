package cli

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"confguest/agent/api/policy"
	agentv1 "confguest/agent/api/v1"
	"confguest/agent/api/v1/wiretest"
	// Test only: the generated policy is checked with the agent's own
	// evaluator. The confguest binary imports nothing of the agent but
	// its API (agent/api/...).
	evaluator "confguest/agent/policy"
	"confguest/hostside/image"
	"confguest/hostside/launcher"
)

func TestExecArgs(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{"/bin/ls /", []string{"/bin/ls", "/"}, ""},
		{`["sh", "-c", "echo in guest; exit 3"]`, []string{"sh", "-c", "echo in guest; exit 3"}, ""},
		{" [\"true\"] ", []string{"true"}, ""},
		{"   ", nil, "give a command line"},
		{"[]", nil, "give a command"},
		{`["sh", 1]`, nil, "not a JSON array of strings"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := execArgs(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("execArgs(%q) = %q, %v, want an error naming %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || strings.Join(got, "\x00") != strings.Join(tc.want, "\x00") {
				t.Errorf("execArgs(%q) = %q, %v, want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestPolicyHash(t *testing.T) {
	dir := t.TempDir()
	doc := []byte(`{"version": 1}` + "\n")
	good := filepath.Join(dir, "p.json")
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(good, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(`{"version": 1, "allow": true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(doc)
	tests := []struct {
		args     []string
		wantCode int
		want     string
	}{
		{[]string{"policy", "hash", good}, 0, hex.EncodeToString(sum[:]) + "\n"},
		{[]string{"policy", "hash", "--format", "base64", good}, 0, base64.StdEncoding.EncodeToString(sum[:]) + "\n"},
		{[]string{"policy", "hash", bad}, 1, `unknown field "allow"`},
		{[]string{"policy", "hash", filepath.Join(dir, "missing.json")}, 1, "read policy"},
		{[]string{"policy", "hash"}, 2, "usage: confguest policy hash"},
		{[]string{"policy", "hash", "--format", "b32", good}, 2, "--format"},
		{[]string{"policy"}, 2, "generate|hash"},
		{[]string{"policy", "check"}, 2, `policy "check"`},
	}
	for _, tc := range tests {
		code, out, errOut := runCLI(tc.args...)
		if code != tc.wantCode || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("confguest %s = %d, %q %q, want %d with %q", strings.Join(tc.args, " "), code, out, errOut, tc.wantCode, tc.want)
		}
		if tc.wantCode == 0 && out != tc.want {
			t.Errorf("confguest %s printed %q, want exactly %q", strings.Join(tc.args, " "), out, tc.want)
		}
	}
}

// TestPolicySeccompHash checks the hash of the documented example profile
// against the value examples/service.json pins, and that a spec holding the
// same profile, written differently, hashes the same.
func TestPolicySeccompHash(t *testing.T) {
	const example = "../../agent/policy/examples/seccomp/service.json"
	const want = "sha256:23f3120118caae563e7c800377e0ce334b84ec928f4f047892bea86d13a84b6d\n"
	b, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	spec := filepath.Join(dir, "config.json")
	if err := os.WriteFile(spec, []byte(`{"ociVersion": "1.2.0", "linux": {"seccomp": `+strings.ReplaceAll(string(b), "\n", " ")+`}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.json")
	if err := os.WriteFile(other, []byte(`{"defaultAction": "SCMP_ACT_ALLOW"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args     []string
		wantCode int
		want     string
	}{
		{[]string{"policy", "seccomp-hash", example}, 0, want},
		{[]string{"policy", "seccomp-hash", spec}, 0, want},
		{[]string{"policy", "seccomp-hash", other}, 0, "sha256:"},
		{[]string{"policy", "seccomp-hash", "../../agent/policy/examples/hello.json"}, 1, "not a seccomp profile"},
		{[]string{"policy", "seccomp-hash"}, 2, "usage: confguest policy seccomp-hash"},
	}
	for _, tc := range tests {
		code, out, errOut := runCLI(tc.args...)
		if code != tc.wantCode || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("confguest %s = %d, %q %q, want %d with %q", strings.Join(tc.args, " "), code, out, errOut, tc.wantCode, tc.want)
		}
		if tc.wantCode == 0 && tc.args[2] == other && out == want {
			t.Errorf("confguest %s printed the example's hash for another profile", strings.Join(tc.args, " "))
		}
	}
}

// TestPolicyGenerate generates a policy for a directory rootfs and checks
// with the agent's own evaluator that it admits exactly the container
// confguest run would create (same spec, same layer) and nothing else.
func TestPolicyGenerate(t *testing.T) {
	rootfsDir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(rootfsDir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfsDir, "bin", "hello"), []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "policy.json")
	args := []string{"policy", "generate", "--rootfs", rootfsDir, "--env", "GREETING=hi", "--exec", "/bin/ls /", "-o", out, "--", "/bin/hello", "world"}
	code, stdout, stderr := runCLI(args...)
	if code != 0 {
		t.Fatalf("confguest %s = %d\n%s%s", strings.Join(args, " "), code, stdout, stderr)
	}
	doc, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, policy.HashHex(doc)) {
		t.Errorf("confguest policy generate did not print the HOST_DATA %s:\n%s", policy.HashHex(doc), stderr)
	}
	p, err := policy.Parse(doc)
	if err != nil {
		t.Fatalf("Parse(generated policy) = %v\n%s", err, doc)
	}
	// The same again, to standard output: the layer hash is reproducible.
	code, again, stderr := runCLI(args[:8]...)
	if code == 0 || !strings.Contains(stderr, "no command given") {
		t.Errorf("confguest policy generate without a command = %d, %s, want a usage error", code, stderr)
	}
	code, again, stderr = runCLI(append(args[:8:8], "--", "/bin/hello", "world")...)
	if code != 0 || again != string(doc) {
		t.Errorf("second confguest policy generate = %d, %s\n%s\nwant the same policy:\n%s", code, stderr, again, doc)
	}

	layer := p.Containers[0].Rootfs.Layers[0]
	proc, err := launcher.ProcessFromImage(v1.Config{}, []string{"/bin/hello", "world"}, []string{"GREETING=hi"})
	if err != nil {
		t.Fatal(err)
	}
	create := func(proc launcher.Process, layer string) *agentv1.CreateContainerRequest {
		spec, err := json.Marshal(launcher.ContainerSpec(proc, containerID))
		if err != nil {
			t.Fatal(err)
		}
		return &agentv1.CreateContainerRequest{ContainerId: "c1", SpecJson: spec,
			Rootfs: &agentv1.Rootfs{Source: &agentv1.Rootfs_Block{Block: &agentv1.BlockRootfs{Verity: &agentv1.Verity{RootHash: layer, DataBlocks: 1, HashOffset: 4096}}}}}
	}
	other := proc
	other.Args = []string{"/bin/hello", "mars"}
	execProc, err := launcher.ProcessFromImage(v1.Config{WorkingDir: "/"}, []string{"/bin/ls", "/"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	execJSON, err := json.Marshal(launcher.ContainerSpec(execProc, "c1").Process)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	e := evaluator.NewEvaluator(p)
	steps := []struct {
		name   string
		method string
		req    any
		allow  bool
	}{
		{"other layer", evaluator.MethodCreateContainer, create(proc, strings.Repeat("0", 64)), false},
		{"other args", evaluator.MethodCreateContainer, create(other, layer), false},
		{"the container confguest run creates", evaluator.MethodCreateContainer, create(proc, layer), true},
		{"the exec confguest exec sends", evaluator.MethodExecProcess, &agentv1.ExecProcessRequest{ContainerId: "c1", ExecId: "e1", ProcessJson: execJSON}, true},
		{"shutdown", evaluator.MethodShutdown, &agentv1.ShutdownRequest{}, true},
		{"stats", evaluator.MethodStats, &agentv1.StatsRequest{ContainerId: "c1"}, false},
	}
	for _, s := range steps {
		if err := authorize(ctx, e, s.method, s.req); (err == nil) != s.allow {
			t.Errorf("generated policy: Authorize(%s) = %v, want allowed=%v", s.name, err, s.allow)
		}
	}
}

// TestRunPolicyIsGenerated checks that the policy confguest run and start send without
// --policy is byte for byte what confguest policy generate writes with the same flags, so
// its HOST_DATA can be recomputed (and the file given to confguest verify).
func TestRunPolicyIsGenerated(t *testing.T) {
	rootfsDir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(rootfsDir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfsDir, "bin", "hello"), []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	disk, err := image.BuildDisk(context.Background(), image.Source{Kind: image.Dir, Ref: rootfsDir}, work, filepath.Join(work, "ctr0.img"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		f         launchFlags
		tty       bool
		stdin     bool
		cmd       []string
		genFlags  []string
		wantExecs int
	}{
		{name: "run", f: launchFlags{env: stringList{"GREETING=hi"}}, cmd: []string{"/bin/hello", "world"}, genFlags: []string{"--env", "GREETING=hi"}},
		{name: "run -i -t", f: launchFlags{}, tty: true, stdin: true, cmd: []string{"/bin/hello"}, genFlags: []string{"-i", "-t"}},
		{name: "start --exec", f: launchFlags{exec: stringList{"/bin/ls /", `["sh", "-c", "echo in guest; exit 3"]`}}, cmd: []string{"/bin/hello"},
			genFlags: []string{"--exec", "/bin/ls /", "--exec", `["sh", "-c", "echo in guest; exit 3"]`}, wantExecs: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			proc, err := launcher.ProcessFromImage(disk.Config, tc.cmd, tc.f.env)
			if err != nil {
				t.Fatal(err)
			}
			proc.TTY, proc.Stdin = tc.tty, tc.stdin
			got, err := tc.f.generatedPolicy(disk, proc)
			if err != nil {
				t.Fatalf("generatedPolicy() = %v", err)
			}
			args := append(append([]string{"policy", "generate", "--rootfs", rootfsDir}, tc.genFlags...), append([]string{"--"}, tc.cmd...)...)
			code, want, stderr := runCLI(args...)
			if code != 0 {
				t.Fatalf("confguest %s = %d\n%s", strings.Join(args, " "), code, stderr)
			}
			if string(got) != want {
				t.Errorf("run's policy differs from confguest %s:\n%s\nwant:\n%s", strings.Join(args, " "), got, want)
			}
			p, err := policy.Parse(got)
			if err != nil {
				t.Fatal(err)
			}
			c := p.Containers[0]
			if c.TTY != tc.tty || c.Stdin != tc.stdin || len(c.Exec) != tc.wantExecs || !p.Agent.Shutdown {
				t.Errorf("run's policy = %+v, want tty %v, stdin %v, %d exec rules, shutdown allowed", p, tc.tty, tc.stdin, tc.wantExecs)
			}
		})
	}
}

// authorize decides on req as the agent does.
var authorize = wiretest.Authorize
