package qemutests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"confguest/agent/api/policy"
)

// TestCLIHiddenStdout starts a guest whose policy allows an exec but hides stdout
// ("stdout": false): confguest exec runs the command, shows its stderr, returns its exit
// code and says once on stderr that the policy hides stdout; confguest logs says the same
// and succeeds.
func TestCLIHiddenStdout(t *testing.T) {
	e := newCLIEnv(t)
	const execCmd = `["sh","-c","echo to stdout; echo to stderr >&2; exit 3"]`
	file := filepath.Join(t.TempDir(), "policy.json")
	r := e.run("", "policy", "generate", "--rootfs", e.rootfs, "--exec", execCmd, "-o", file, "--", "sh", "-c", "echo started; sleep 1000")
	if r.code != 0 {
		t.Fatalf("confguest policy generate = exit %d\nstderr:\n%s", r.code, r.stderr)
	}
	doc, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	p.Containers[0].Stdout = false
	if doc, err = json.MarshalIndent(p, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, doc, 0o644); err != nil {
		t.Fatal(err)
	}

	args := append(append([]string{"start", "--name", "hidden", "--policy", file}, e.launchFlags()...), "--rootfs", e.rootfs, "--", "sh", "-c", "echo started; sleep 1000")
	if r := e.run("", args...); r.code != 0 {
		t.Fatalf("confguest start --policy (stdout hidden) = %q, exit %d\nstderr:\n%s", r.stdout, r.code, r.stderr)
	}
	t.Cleanup(func() { e.run("", "stop", "--run-dir", e.runDir, "hidden") })

	r = e.run("", "exec", "--run-dir", e.runDir, "hidden", "--", "sh", "-c", "echo to stdout; echo to stderr >&2; exit 3")
	const note = "policy hides stdout"
	if r.code != 3 || r.stdout != "" || !strings.Contains(r.stderr, "to stderr\n") || strings.Count(r.stderr, note) != 1 {
		t.Errorf("confguest exec with stdout hidden = stdout %q, exit %d, stderr %q; want no stdout, exit 3, \"to stderr\" and %q once",
			r.stdout, r.code, r.stderr, note)
	}
	if r := e.run("", "logs", "--run-dir", e.runDir, "hidden"); r.code != 0 || r.stdout != "" || strings.Count(r.stderr, note) != 1 {
		t.Errorf("confguest logs with stdout hidden = stdout %q, exit %d, stderr %q; want no stdout, exit 0 and %q once",
			r.stdout, r.code, r.stderr, note)
	}
	if r := e.run("", "stop", "--run-dir", e.runDir, "hidden"); r.code != 0 {
		t.Errorf("confguest stop = exit %d\nstderr:\n%s", r.code, r.stderr)
	}
	e.checkNoLeftovers()
}
