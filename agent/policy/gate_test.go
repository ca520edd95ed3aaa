package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	agentv1 "confguest/agent/api/v1/wire"
	"confguest/agent/authz"
	"confguest/agent/request"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fixedHostData is a HostDataSource returning one value (or an error).
type fixedHostData struct {
	hd  [32]byte
	err error
}

func (f fixedHostData) HostData(context.Context) ([32]byte, error) { return f.hd, f.err }

func TestGateBinding(t *testing.T) {
	doc := readTestdata(t, "web.json")
	changed := edit(t, doc, `"uid": 1000`, `"uid": 1001`) // one byte: still a valid policy
	tests := []struct {
		name    string
		src     HostDataSource
		doc     []byte
		wantErr error // nil: installed
		poison  bool
	}{
		{"bound", fixedHostData{hd: Hash(doc)}, doc, nil, false},
		{"one changed byte", fixedHostData{hd: Hash(doc)}, changed, ErrNotBound, true},
		{"no tee", nil, doc, nil, false},
		{"no report", fixedHostData{err: errors.New("no SEV-SNP device")}, doc, nil, false},
		{"invalid", fixedHostData{hd: Hash([]byte(`{}`))}, []byte(`{}`), ErrInvalidPolicy, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			g := NewGate(tc.src, slog.New(slog.NewTextHandler(&logs, nil)))
			err := g.Install(context.Background(), tc.doc)
			fs, ok := tc.src.(fixedHostData)
			switch {
			case ok && fs.err != nil:
				if err == nil || !strings.Contains(err.Error(), "no SEV-SNP device") {
					t.Fatalf("Install = %v, want the report error", err)
				}
			case tc.wantErr == nil:
				if err != nil {
					t.Fatalf("Install = %v, want installed", err)
				}
				if h, ok := g.Installed(); !ok || h != HashHex(tc.doc) {
					t.Errorf("Installed() = %s, %v, want %s, true", h, ok, HashHex(tc.doc))
				}
				if err := g.Authorize(context.Background(), MethodListContainers, &agentv1.ListContainersRequest{}); err != nil {
					t.Errorf("Authorize(List) after install = %v, want allowed", err)
				}
				return
			default:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Install = %v, want %v", err, tc.wantErr)
				}
			}
			if _, ok := g.Installed(); ok {
				t.Errorf("Installed() = true after a failed install")
			}
			err = g.Authorize(context.Background(), MethodSetPolicy, nil)
			if tc.poison != (err != nil) {
				t.Errorf("Authorize(SetPolicy) after the failure = %v, want refused: %v", err, tc.poison)
			}
			if tc.poison {
				for _, m := range []string{MethodVersion, MethodGetReport, MethodListContainers} {
					if err := g.Authorize(context.Background(), m, nil); !errors.Is(err, ErrPoisoned) || !errors.Is(err, authz.ErrDenied) {
						t.Errorf("Authorize(%s) after a binding failure = %v, want ErrPoisoned", m, err)
					}
				}
				if err := g.Install(context.Background(), doc); !errors.Is(err, ErrPoisoned) {
					t.Errorf("Install(the right policy) after a binding failure = %v, want ErrPoisoned", err)
				}
				if !strings.Contains(logs.String(), "policy binding failed") || !strings.Contains(logs.String(), HashHex(tc.doc)) {
					t.Errorf("log does not say why:\n%s", logs.String())
				}
			}
		})
	}
}

func TestGateReplace(t *testing.T) {
	doc := readTestdata(t, "web.json")
	replaceable := edit(t, doc, `"replace_policy": false`, `"replace_policy": true`)
	tests := []struct {
		name        string
		first, next []byte
		wantErr     error
	}{
		{"not allowed", doc, replaceable, authz.ErrDenied},
		{"allowed", replaceable, doc, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewGate(fixedHostData{hd: Hash(tc.first)}, discardLogger())
			ctx := context.Background()
			if err := g.Install(ctx, tc.first); err != nil {
				t.Fatal(err)
			}
			err := g.Install(ctx, tc.next)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Install(second) = %v, want %v", err, tc.wantErr)
			}
			want := HashHex(tc.first)
			if tc.wantErr == nil {
				want = HashHex(tc.next)
			}
			if h, _ := g.Installed(); h != want {
				t.Errorf("Installed() = %s, want %s", h, want)
			}
		})
	}
}

func TestGateLogsDenials(t *testing.T) {
	var logs bytes.Buffer
	g := NewGate(nil, slog.New(slog.NewTextHandler(&logs, nil)))
	err := g.Authorize(context.Background(), MethodStartContainer, &agentv1.StartContainerRequest{ContainerId: "c"})
	if !errors.Is(err, ErrNoPolicy) {
		t.Fatalf("Authorize(start) before a policy = %v, want ErrNoPolicy", err)
	}
	want := fmt.Sprintf("method=%s decision=deny", MethodStartContainer)
	if !strings.Contains(logs.String(), want) {
		t.Errorf("log has no %q:\n%s", want, logs.String())
	}
}

func TestGateAdmitted(t *testing.T) {
	g := admitted(t)
	tests := []struct {
		id          string
		ok, attests bool
	}{
		{"w", true, true},
		{"t", true, false},
		{"x", false, false},
	}
	for _, tc := range tests {
		c, ok := g.Admitted(tc.id)
		if ok != tc.ok || c.Attestation != tc.attests {
			t.Errorf("Admitted(%q) = %s attestation=%v, %v, want attestation=%v, %v", tc.id, c.Name, c.Attestation, ok, tc.attests, tc.ok)
		}
	}
}

// TestGateReplaceCarriesAdmissions replaces a policy under admitted
// containers: each continues under the new policy's entry of its name,
// follows that entry's rules, and is unreachable when the name is gone.
func TestGateReplaceCarriesAdmissions(t *testing.T) {
	replaceable := []string{`"replace_policy": false`, `"replace_policy": true`}
	calls := []struct {
		name   string
		method string
		req    any
	}{
		{"start w", MethodStartContainer, &agentv1.StartContainerRequest{ContainerId: "w"}},
		{"start t", MethodStartContainer, &agentv1.StartContainerRequest{ContainerId: "t"}},
		{"wait w/ls", MethodWaitProcess, &agentv1.WaitProcessRequest{Process: ref("w", "ls")}},
		{"wait w/sh", MethodWaitProcess, &agentv1.WaitProcessRequest{Process: ref("w", "sh")}},
		{"stdout of w", MethodReadOutput, &agentv1.ReadOutputRequest{Process: ref("w", ""), Stream: agentv1.OutputStream_OUTPUT_STREAM_STDOUT}},
	}
	tests := []struct {
		name   string
		mutate func(*Policy)
		// want holds the rule that denies each call, "" for allowed.
		want [5]string
	}{
		{"same document", func(*Policy) {}, [5]string{}},
		{"entries reordered", func(p *Policy) {
			p.Containers[0], p.Containers[1] = p.Containers[1], p.Containers[0]
		}, [5]string{}},
		{"tools dropped", func(p *Policy) { p.Containers = p.Containers[:1] },
			[5]string{1: "containers"}},
		{"tools renamed", func(p *Policy) { p.Containers[1].Name = "shell" },
			[5]string{1: "containers"}},
		{"web tightened", func(p *Policy) {
			p.Containers[0].Stdout = false
			p.Containers[0].Exec[1].Stdin = false // the rule that admitted sh
		}, [5]string{3: "containers[web].exec", 4: "containers[web].stdout"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := admitted(t, replaceable...)
			p, err := Parse(edit(t, readTestdata(t, "web.json"), replaceable[0], replaceable[1]))
			if err != nil {
				t.Fatal(err)
			}
			tc.mutate(p)
			next, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := g.Install(context.Background(), next); err != nil {
				t.Fatalf("Install(replacement) = %v", err)
			}
			for i, c := range calls {
				err := g.Authorize(context.Background(), c.method, c.req)
				var d *Denial
				switch {
				case tc.want[i] == "" && err != nil:
					t.Errorf("%s after the replacement = %v, want allowed", c.name, err)
				case tc.want[i] != "" && (!errors.As(err, &d) || d.Rule != tc.want[i]):
					t.Errorf("%s after the replacement = %v, want denied by rule %s", c.name, err, tc.want[i])
				}
			}
		})
	}

	t.Run("replacement refused", func(t *testing.T) {
		g := admitted(t) // web.json: replace_policy false
		next := edit(t, readTestdata(t, "web.json"), `"attestation": true`, `"attestation": false`)
		if err := g.Install(context.Background(), next); !errors.Is(err, authz.ErrDenied) {
			t.Fatalf("Install(replacement) under a policy without replace_policy = %v, want denied", err)
		}
		if c, ok := g.Admitted("w"); !ok || !c.Attestation {
			t.Errorf("Admitted(w) after a refused replacement = attestation %v, %v; want the installed policy's entry (attestation true), true", c.Attestation, ok)
		}
	})
}

// TestAdmissionOnlyOnSuccess checks that an allowed create or exec binds
// nothing until the container manager calls its Admit, and that an Admit
// refuses what changed since the check: a replaced policy, a container
// forgotten meanwhile, an ID admitted by another create.
func TestAdmissionOnlyOnSuccess(t *testing.T) {
	ctx := context.Background()
	check := func(t *testing.T, g *Gate, method string, req any) any {
		t.Helper()
		d, err := authz.Check(ctx, g, method, req)
		if err != nil {
			t.Fatalf("Check(%s) = %v, want allowed", method, err)
		}
		return d
	}
	tests := []struct {
		name     string
		run      func(t *testing.T, g *Gate) error // returns the Admit's error
		wantRule string                            // "" = admitted
	}{
		{"create admitted on success", func(t *testing.T, g *Gate) error {
			d := check(t, g, MethodCreateContainer, createWeb("n", nil))
			if err := authorize(ctx, g, MethodStartContainer, &agentv1.StartContainerRequest{ContainerId: "n"}); err == nil {
				t.Error("Authorize(start n) before its create's Admit = nil, want a denial")
			}
			return request.Admit(d)
		}, ""},
		{"create on an ID admitted meanwhile", func(t *testing.T, g *Gate) error {
			d1 := check(t, g, MethodCreateContainer, createWeb("n", nil))
			d2 := check(t, g, MethodCreateContainer, createTools("n"))
			if err := request.Admit(d1); err != nil {
				t.Fatalf("first Admit = %v", err)
			}
			return request.Admit(d2)
		}, `container "n" was admitted under this entry`},
		{"create across a policy replacement", func(t *testing.T, g *Gate) error {
			d := check(t, g, MethodCreateContainer, createWeb("n", nil))
			doc := edit(t, readTestdata(t, "web.json"), `"replace_policy": false`, `"replace_policy": true`)
			if err := g.Install(ctx, doc); err != nil {
				t.Fatalf("Install(replacement) = %v", err)
			}
			return request.Admit(d)
		}, "agent.replace_policy"},
		{"exec after its container was forgotten", func(t *testing.T, g *Gate) error {
			d := check(t, g, MethodExecProcess, execReq("w", "n", specs.Process{Args: []string{"/bin/ls", "/srv"}}, false))
			g.Forget("w")
			return request.Admit(d)
		}, `container "w" is no longer admitted`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := admitted(t, `"replace_policy": false`, `"replace_policy": true`)
			err := tc.run(t, g)
			if tc.wantRule == "" {
				if err != nil {
					t.Fatalf("Admit = %v, want admitted", err)
				}
				return
			}
			if !errors.Is(err, authz.ErrDenied) || !strings.Contains(err.Error(), tc.wantRule) {
				t.Fatalf("Admit = %v, want a denial naming %q", err, tc.wantRule)
			}
		})
	}
}
