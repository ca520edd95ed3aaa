package ops

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"confguest/agent/libct"
)

// Requests the helper refuses: each still gets a result (exit 0) that names the problem.
func TestMainRefuses(t *testing.T) {
	root := t.TempDir()
	for _, tc := range []struct {
		name, args, in, want, kind string
	}{
		{"no operation", "", `{"op":"start","id":"c1"}`, "want one operation", ""},
		{"two operations", "start stop", `{"op":"start","id":"c1"}`, "want one operation", ""},
		{"not JSON", "start", `start c1`, "decode the request", ""},
		{"unknown field", "start", `{"op":"start","id":"c1","hooks":[]}`, `unknown field "hooks"`, ""},
		{"operation differs", "destroy", `{"op":"start","id":"c1","root":"` + root + `"}`, `the request is for "start", the argument says "destroy"`, ""},
		{"unknown operation", "pause", `{"op":"pause","id":"c1","root":"` + root + `"}`, `unknown operation "pause"`, ""},
		{"no container", "start", `{"op":"start","id":"c1","root":"` + root + `"}`, "load container c1", ""},
		{"create without a spec", "create", `{"op":"create","id":"c1","root":"` + root + `"}`, "no spec", libct.KindInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, diag bytes.Buffer
			if code := Main(strings.Fields(tc.args), strings.NewReader(tc.in), &out, &diag); code != 0 {
				t.Fatalf("Main = %d, want 0 (a result was written); stderr %q", code, diag.String())
			}
			var res libct.Result
			if err := json.Unmarshal(out.Bytes(), &res); err != nil {
				t.Fatalf("result %q: %v", out.String(), err)
			}
			if res.Error == "" || !strings.Contains(res.Error, tc.want) || res.Kind != tc.kind {
				t.Errorf("result %+v: want an error containing %q of kind %q", res, tc.want, tc.kind)
			}
		})
	}
}
