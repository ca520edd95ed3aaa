package launcher

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	agentv1 "confguest/agent/api/v1"
	"confguest/hostside/image"
	"confguest/rootfs"
)

var testDisk = Disk{Serial: "ctr0", Disk: image.Disk{Path: "/run/ctr0.img", Verity: rootfs.Params{
	RootHash: strings.Repeat("ab", 32), Salt: "00", HashOffset: 8192, DataBlocks: 2,
	DataBlockSize: 4096, HashBlockSize: 4096, Algorithm: "sha256",
}}}

func TestRunContainer(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		stdin      string
		wantOut    string
		wantErrOut string
		wantCode   int
	}{
		{"output", []string{"echo", "hello", "world"}, "", "hello world\n", "", 0},
		{"exit code", []string{"sh", "-c", "exit 7"}, "", "", "", 7},
		{"stdin piped", []string{"cat"}, "hi\nthere\n", "hi\nthere\n", "", 0},
		{"stderr", []string{"stderr", "oops"}, "", "", "oops", 3},
		{"more output than credit", []string{"big", "200000"}, "", strings.Repeat("x", 200000), "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newFakeAgent()
			sb := serveFakeAgent(t, a)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var out, errOut bytes.Buffer
			p := Process{Args: tc.args, Cwd: "/", Stdin: tc.stdin != ""}
			code, err := sb.RunContainer(ctx, "ctr", testDisk, p, IO{
				Stdin: strings.NewReader(tc.stdin), Stdout: &out, Stderr: &errOut,
			})
			if err != nil {
				t.Fatalf("RunContainer(%q) = %v", tc.args, err)
			}
			if code != tc.wantCode {
				t.Errorf("RunContainer(%q) exit code = %d, want %d", tc.args, code, tc.wantCode)
			}
			if out.String() != tc.wantOut || errOut.String() != tc.wantErrOut {
				t.Errorf("RunContainer(%q) stdout, stderr = %.40q, %q; want %.40q, %q", tc.args, out.String(), errOut.String(), tc.wantOut, tc.wantErrOut)
			}
			a.mu.Lock()
			_, still := a.containers["ctr"]
			a.mu.Unlock()
			if still {
				t.Errorf("container still exists after RunContainer, want it deleted")
			}
		})
	}
}

func TestCreateContainerRequest(t *testing.T) {
	a := newFakeAgent()
	sb := serveFakeAgent(t, a)
	p, err := ProcessFromImage(v1.Config{Env: []string{"A=1"}, WorkingDir: "/w"}, []string{"echo", "x"}, []string{"B=2"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sb.CreateContainer(context.Background(), "c1", testDisk, ContainerSpec(p, "c1"), p.stdio()); err != nil {
		t.Fatalf("CreateContainer = %v", err)
	}
	c := a.containers["c1"]
	blk := c.req.GetRootfs().GetBlock()
	if blk.GetSerial() != "ctr0" || blk.GetVerity().GetRootHash() != testDisk.Verity.RootHash ||
		blk.GetVerity().GetHashOffset() != 8192 || blk.GetVerity().GetDataBlocks() != 2 || blk.GetFsType() != "erofs" {
		t.Errorf("CreateContainer rootfs = %v, want serial ctr0 and the disk's verity params", blk)
	}
	if got := c.spec.Process; !slices.Equal(got.Args, []string{"echo", "x"}) || got.Cwd != "/w" ||
		!slices.Contains(got.Env, "A=1") || !slices.Contains(got.Env, "B=2") {
		t.Errorf("CreateContainer process = %+v, want args, cwd and env from the image and flags", got)
	}
	if _, err := sb.CreateContainer(context.Background(), "c1", testDisk, ContainerSpec(p, "c1"), p.stdio()); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("CreateContainer twice = %v, want the agent's AlreadyExists", err)
	}
}

func TestExecAndLogs(t *testing.T) {
	a := newFakeAgent()
	sb := serveFakeAgent(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sb.StartContainer(ctx, "ctr", testDisk, Process{Args: []string{"echo", "from", "init"}}); err != nil {
		t.Fatalf("StartContainer = %v", err)
	}
	var out, errOut bytes.Buffer
	code, err := sb.Exec(ctx, "ctr", "e1", Process{Args: []string{"sh", "-c", "exit 4"}}, IO{Stdout: &out, Stderr: &errOut})
	if err != nil || code != 4 {
		t.Errorf("Exec(exit 4) = %d, %v, want 4, nil", code, err)
	}
	out.Reset()
	if err := sb.Logs(ctx, "ctr", IO{Stdout: &out, Stderr: &errOut}, true, 0); err != nil || out.String() != "from init\n" {
		t.Errorf("Logs(follow) = %q, %v, want %q", out.String(), err, "from init\n")
	}
	out.Reset()
	if err := sb.Logs(ctx, "ctr", IO{Stdout: &out, Stderr: &errOut}, false, 200*time.Millisecond); err != nil || out.String() != "from init\n" {
		t.Errorf("Logs = %q, %v, want %q", out.String(), err, "from init\n")
	}
}

// TestHiddenOutput: a stream the policy hides is not an error for Exec and Logs; the process
// runs, its exit code is returned and one line on Warn says what is not shown and why.
func TestHiddenOutput(t *testing.T) {
	tests := []struct {
		name          string
		hidden        agentv1.OutputStream
		args          []string
		tty           bool
		wantOut       string
		wantErrOut    string
		wantCode      int
		wantWarnMatch string
	}{
		{"stdout hidden", agentv1.OutputStream_OUTPUT_STREAM_STDOUT, []string{"stderr", "oops"}, false, "", "oops", 3, "policy hides stdout"},
		{"stderr hidden", agentv1.OutputStream_OUTPUT_STREAM_STDERR, []string{"echo", "hi"}, false, "hi\n", "", 0, "policy hides stderr"},
		{"terminal hidden", agentv1.OutputStream_OUTPUT_STREAM_STDOUT, []string{"sh", "-c", "exit 5"}, true, "", "", 5, "policy hides stdout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newFakeAgent()
			a.hidden[tc.hidden] = true
			sb := serveFakeAgent(t, a)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := sb.StartContainer(ctx, "ctr", testDisk, Process{Args: []string{"echo", "from", "init"}}); err != nil {
				t.Fatalf("StartContainer = %v", err)
			}
			var out, errOut, warn bytes.Buffer
			code, err := sb.Exec(ctx, "ctr", "e1", Process{Args: tc.args, TTY: tc.tty}, IO{Stdout: &out, Stderr: &errOut, Warn: &warn})
			if err != nil || code != tc.wantCode {
				t.Errorf("Exec(%q) with %s hidden = %d, %v; want %d, nil", tc.args, tc.hidden.Name(), code, err, tc.wantCode)
			}
			if out.String() != tc.wantOut || errOut.String() != tc.wantErrOut {
				t.Errorf("Exec(%q) with %s hidden: stdout, stderr = %q, %q; want %q, %q", tc.args, tc.hidden.Name(), out.String(), errOut.String(), tc.wantOut, tc.wantErrOut)
			}
			if w := warn.String(); strings.Count(w, "\n") != 1 || !strings.Contains(w, tc.wantWarnMatch) || !strings.Contains(w, "containers[main]."+tc.hidden.Name()) {
				t.Errorf("Exec(%q) with %s hidden: warnings %q; want one line saying %q with the policy rule", tc.args, tc.hidden.Name(), w, tc.wantWarnMatch)
			}

			// The init process wrote "from init" to stdout.
			out.Reset()
			warn.Reset()
			wantLog := "from init\n"
			if tc.hidden == agentv1.OutputStream_OUTPUT_STREAM_STDOUT {
				wantLog = ""
			}
			if err := sb.Logs(ctx, "ctr", IO{Stdout: &out, Stderr: &errOut, Warn: &warn}, true, 0); err != nil || out.String() != wantLog {
				t.Errorf("Logs with %s hidden = %q, %v; want %q, nil", tc.hidden.Name(), out.String(), err, wantLog)
			}
			if w := warn.String(); strings.Count(w, "\n") != 1 || !strings.Contains(w, tc.wantWarnMatch) {
				t.Errorf("Logs with %s hidden: warnings %q; want one line saying %q", tc.hidden.Name(), w, tc.wantWarnMatch)
			}
		})
	}
}

func TestProcessFromImage(t *testing.T) {
	tests := []struct {
		name     string
		cfg      v1.Config
		args     []string
		env      []string
		wantArgs []string
		wantEnv  []string
		wantCwd  string
		wantErr  string
	}{
		{"args only", v1.Config{}, []string{"ls"}, nil, []string{"ls"}, []string{defaultPath}, "/", ""},
		{"image cmd", v1.Config{Cmd: []string{"sh"}, WorkingDir: "/app"}, nil, nil, []string{"sh"}, []string{defaultPath}, "/app", ""},
		{"entrypoint kept", v1.Config{Entrypoint: []string{"/init"}, Cmd: []string{"a"}}, []string{"b"}, nil, []string{"/init", "b"}, []string{defaultPath}, "/", ""},
		{"env override", v1.Config{Env: []string{"PATH=/x", "A=1"}}, []string{"ls"}, []string{"A=2"}, []string{"ls"}, []string{"PATH=/x", "A=2"}, "/", ""},
		{"no command", v1.Config{}, nil, nil, nil, nil, "", "no command given"},
		{"bad env", v1.Config{}, []string{"ls"}, []string{"NOEQUALS"}, nil, nil, "", "want KEY=VALUE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ProcessFromImage(tc.cfg, tc.args, tc.env)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("ProcessFromImage(%q) = %v, want error %q", tc.args, err, tc.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(p.Args, tc.wantArgs) || !slices.Equal(p.Env, tc.wantEnv) || p.Cwd != tc.wantCwd {
				t.Errorf("ProcessFromImage(%q) = %+v, %v; want args %q env %q cwd %q", tc.args, p, err, tc.wantArgs, tc.wantEnv, tc.wantCwd)
			}
		})
	}
}
