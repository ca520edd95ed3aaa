package policy

import (
	"context"
	"fmt"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	agentv1 "confguest/agent/api/v1/wire"
)

// policy50 returns a policy with 50 entries shaped like web in
// testdata/web.json, each with its own layer; entry 49 is the one the
// benchmark's requests match (the last one a linear scan would reach).
func policy50(b *testing.B) *Policy {
	doc := string(readTestdata(b, "web.json"))
	start := strings.Index(doc, `    {
      "name": "web"`)
	end := strings.Index(doc, `    {
      "name": "tools"`)
	entry := doc[start:end]
	var entries []string
	for i := range 50 {
		e := strings.Replace(entry, `"name": "web"`, fmt.Sprintf(`"name": "web%d"`, i), 1)
		if i != 49 {
			e = strings.Replace(e, webLayer, fmt.Sprintf("%064x", i), 1)
		}
		entries = append(entries, e)
	}
	full := doc[:start] + strings.Join(entries, "") + doc[end:]
	p, err := Parse([]byte(full))
	if err != nil {
		b.Fatal(err)
	}
	if len(p.Containers) != 51 {
		b.Fatalf("policy has %d entries, want 51", len(p.Containers))
	}
	return p
}

// BenchmarkAuthorize measures the evaluation cost of one request under a
// 50-container policy, per kind of request.
func BenchmarkAuthorize(b *testing.B) {
	p := policy50(b)
	ctx := context.Background()
	e := NewEvaluator(p)
	if err := authorize(ctx, e, MethodCreateContainer, createWeb("w", nil)); err != nil {
		b.Fatal(err)
	}
	if err := authorize(ctx, e, MethodExecProcess, execReq("w", "ls", specs.Process{Args: []string{"/bin/ls", "/srv"}}, false)); err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name   string
		method string
		req    any
	}{
		{"Wait", MethodWaitProcess, &agentv1.WaitProcessRequest{Process: ref("w", "ls")}},
		{"ReadOutputCredit", MethodReadOutput, &agentv1.ReadOutputRequest{Credit: 1}},
		{"ReadOutput", MethodReadOutput, &agentv1.ReadOutputRequest{Process: ref("w", ""), Credit: 1}},
		{"WriteStdinDenied", MethodWriteStdin, &agentv1.WriteStdinRequest{Process: ref("w", ""), Data: []byte("x")}},
		{"CreateContainer", MethodCreateContainer, createWeb("w", nil)},
		{"CreateContainerDenied", MethodCreateContainer, createWeb("w", func(s *specs.Spec) { s.Process.Args[1] = "-x" })},
		{"ExecProcess", MethodExecProcess, execReq("w", "ls", specs.Process{Args: []string{"/bin/ls", "/srv"}}, false)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			want := !strings.HasSuffix(c.name, "Denied")
			for b.Loop() {
				if err := authorize(ctx, e, c.method, c.req); (err == nil) != want {
					b.Fatalf("Authorize(%s) = %v, want allowed=%v", c.name, err, want)
				}
			}
		})
	}
}
