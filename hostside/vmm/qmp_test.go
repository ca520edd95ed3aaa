package vmm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestQMPExecute(t *testing.T) {
	dir, err := os.MkdirTemp("", "qmp")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, QMPSocket)
	if _, err := QMPExecute(context.Background(), sock, "query-status", nil); !errors.Is(err, ErrNotRunning) {
		t.Errorf("QMPExecute without a socket = %v, want ErrNotRunning", err)
	}
	f := serveFakeQMPReplies(t, sock, "system_reset", map[string]string{"query-status": `{"status": "running"}`})
	ret, err := QMPExecute(context.Background(), sock, "query-status", map[string]any{"x": 1})
	if err != nil || string(ret) != `{"status": "running"}` {
		t.Errorf("QMPExecute query-status = %s, %v; want its return value", ret, err)
	}
	if _, err := QMPExecute(context.Background(), sock, "system_reset", nil); !errors.Is(err, ErrAPI) {
		t.Errorf("QMPExecute of a refused command = %v, want ErrAPI", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.cmds) != 4 || f.cmds[1]["execute"] != "query-status" || f.cmds[1]["arguments"].(map[string]any)["x"] != float64(1) {
		t.Errorf("commands sent = %v, want capabilities then query-status with its arguments, twice", f.cmds)
	}
}
