package guestimage

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestStageRootRecordsAgentDigest checks that the staged root carries the agent's SHA-256
// beside it, in the format the agent reads for its Version call, and the helper as
// /sbin/libct.
func TestStageRootRecordsAgentDigest(t *testing.T) {
	dir := t.TempDir()
	agent, libct := filepath.Join(dir, "agent"), filepath.Join(dir, "libct")
	if err := os.WriteFile(agent, []byte("an agent binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(libct, []byte("its helper"), 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "root")
	if err := stageRoot(root, agent, libct); err != nil {
		t.Fatalf("stageRoot: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(root, "sbin", "libct")); err != nil || string(got) != "its helper" {
		t.Errorf("sbin/libct = %q, %v; want the helper", got, err)
	}
	got, err := os.ReadFile(filepath.Join(root, "sbin", "agent.sha256"))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%x  agent\n", sha256.Sum256([]byte("an agent binary")))
	if string(got) != want {
		t.Errorf("sbin/agent.sha256 = %q, want %q", got, want)
	}
	st, err := os.Stat(filepath.Join(root, "sbin", "agent.sha256"))
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("sbin/agent.sha256 mode = %v, %v, want 0644", st.Mode(), err)
	}
}
