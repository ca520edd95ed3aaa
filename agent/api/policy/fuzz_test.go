package policy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that Parse never panics and that whatever it accepts
// survives a round trip through its own JSON encoding.
func FuzzParse(f *testing.F) {
	f.Add(readTestdata(f, "web.json"))
	examples, _ := filepath.Glob(filepath.Join(docsDir, "examples", "*.json"))
	for _, e := range examples {
		b, err := os.ReadFile(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"version":1,"containers":[{"name":"a","rootfs":{"guest_directory":"/a"},"args":[{"pattern":"a*"}]}]}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		p, err := Parse(doc)
		if err != nil {
			return
		}
		again, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("Marshal(Parse(%q)) = %v", doc, err)
		}
		q, err := Parse(again)
		if err != nil {
			t.Fatalf("Parse(Marshal(Parse(%q))) = %v, want the same policy", doc, err)
		}
		third, err := json.Marshal(q)
		if err != nil || string(third) != string(again) {
			t.Fatalf("round trip of %q changed the policy:\n%s\n%s", doc, again, third)
		}
	})
}
