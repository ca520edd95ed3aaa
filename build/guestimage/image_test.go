package guestimage

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestStageRootRecordsAgentDigest checks that the staged root carries the agent's SHA-256
// beside it, in the format the agent reads for its Version call.
func TestStageRootRecordsAgentDigest(t *testing.T) {
	agent := filepath.Join(t.TempDir(), "agent")
	if err := os.WriteFile(agent, []byte("an agent binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "root")
	if err := stageRoot(root, agent); err != nil {
		t.Fatalf("stageRoot: %v", err)
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
