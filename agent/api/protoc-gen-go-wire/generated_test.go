package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedFilesCurrent regenerates the API's code (agent/api/generate.sh, both sides:
// protoc-gen-go's and protoc-gen-go-ttrpc's for the host, this plugin's for the agent) into
// a temporary directory and compares it with the committed files: the host's and the
// agent's encodings of agent.proto must come from the same file. It needs protoc (Debian's
// protobuf-compiler, which `make setup` installs); without it the test is skipped, and
// fails when CI is set.
func TestGeneratedFilesCurrent(t *testing.T) {
	if _, err := exec.LookPath("protoc"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("protoc not found (CI is set): %v", err)
		}
		t.Skip("protoc not found: apt-get install protobuf-compiler")
	}
	out := t.TempDir()
	cmd := exec.Command("sh", filepath.Join("..", "generate.sh"), out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("generate.sh: %v\n%s", err, b)
	}
	for _, f := range []string{"v1/agent.pb.go", "v1/agent_ttrpc.pb.go", "v1/wire/agent.wire.go"} {
		got, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join("..", f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("agent/api/%s is not what agent.proto generates: run make generate and commit the result", f)
		}
	}
}
