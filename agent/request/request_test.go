package request

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	agentv1 "confguest/agent/api/v1/wire"
)

func TestSpecStrict(t *testing.T) {
	tests := []struct {
		name    string
		json    string
		wantErr string // "" = decodes
	}{
		{"minimal", `{"process":{"args":["/bin/sh"],"cwd":"/"},"linux":{}}`, ""},
		{"unknown field ignored", `{"process":{"args":["/bin/sh"]},"org.example.ext":{"a":[1,2,{"b":null}]}}`, ""},
		{"same key in sibling objects", `{"mounts":[{"type":"a"},{"type":"b"}],"annotations":{"type":"x"}}`, ""},
		{"empty", ``, "empty"},
		{"not json", `{`, "not an OCI runtime spec"},
		{"trailing value", `{"ociVersion":"1.0.0"} {}`, "not an OCI runtime spec"},
		{"trailing garbage", `{"ociVersion":"1.0.0"}x`, "not an OCI runtime spec"},
		{"duplicate key", `{"process":{"args":["/bin/true"]},"process":{"args":["/bin/sh"]}}`, `key "process" given twice`},
		{"duplicate key differing in case", `{"process":{"args":["/bin/true"]},"Process":{"args":["/bin/sh"]}}`, `key "Process" given twice`},
		{"duplicate nested key", `{"process":{"user":{"uid":1000,"uid":0}}}`, `key "uid" given twice`},
		{"duplicate key via kelvin sign", `{"linux":{"masKedPaths":[],"mas\u212aedPaths":["/x"]}}`, "given twice"},
		{"duplicate annotation", `{"annotations":{"a":"1","a":"2"}}`, `key "a" given twice`},
		{"invalid utf-8", "{\"hostname\":\"a\xffb\"}", "UTF-8"},
		{"too deep", `{"annotations":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, "nested deeper"},
		{"too large", `{"hostname":"` + strings.Repeat("a", MaxJSONBytes) + `"}`, "the limit is"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Spec([]byte(tc.json))
			if tc.wantErr == "" {
				if err != nil || s == nil {
					t.Fatalf("Spec(%q) = %v, %v, want a spec", tc.json, s, err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "spec_json: ") {
				t.Fatalf("Spec(%q) = %v, want an ErrMalformed naming spec_json and %q", tc.json, err, tc.wantErr)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	create := &agentv1.CreateContainerRequest{ContainerId: "c", SpecJson: []byte(`{"process":{"args":["/bin/sh"]}}`)}
	d, err := Decode(create)
	cc, ok := d.(*CreateContainer)
	if err != nil || !ok || cc.CreateContainerRequest != create || cc.Spec.Process.Args[0] != "/bin/sh" {
		t.Fatalf("Decode(create) = %#v, %v, want a *CreateContainer around the same message", d, err)
	}
	exec := &agentv1.ExecProcessRequest{ContainerId: "c", ExecId: "e", ProcessJson: []byte(`{"args":["/bin/ls"],"args":["/bin/sh"]}`)}
	if d, err := Decode(exec); err == nil || !strings.HasPrefix(err.Error(), "process_json: ") {
		t.Fatalf("Decode(exec with duplicate args) = %#v, %v, want an error naming process_json", d, err)
	}
	exec.ProcessJson = []byte(`{"args":["/bin/ls"]}`)
	d, err = Decode(exec)
	if ep, ok := d.(*ExecProcess); err != nil || !ok || ep.ExecProcessRequest != exec || ep.Process.Args[0] != "/bin/ls" {
		t.Fatalf("Decode(exec) = %#v, %v, want an *ExecProcess around the same message", d, err)
	}
	start := &agentv1.StartContainerRequest{ContainerId: "c"}
	if d, err := Decode(start); err != nil || d != any(start) {
		t.Fatalf("Decode(start) = %#v, %v, want the message itself", d, err)
	}
}

// FuzzSpec checks that Spec never panics and refuses only with
// ErrMalformed.
func FuzzSpec(f *testing.F) {
	f.Add([]byte(`{"process":{"args":["/bin/sh"],"cwd":"/"},"linux":{}}`))
	f.Add([]byte(`{"a":{"b":[{"c":1,"C":2}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := Spec(data); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("Spec(%q) = %v, want nil or ErrMalformed", data, err)
		}
	})
}

func TestEscapedDuplicateKey(t *testing.T) {
	for _, js := range []string{
		`{"process":{"args":["/bin/true"]},"\u0070rocess":{"args":["/bin/sh"]}}`,
		`{"a":{"b":1},"c":[{"d":"\"}{","d":2}]}`,
	} {
		if _, err := Spec([]byte(js)); err == nil || !strings.Contains(err.Error(), "given twice") {
			t.Errorf("Spec(%s) = %v, want a duplicate key refused", js, err)
		}
	}
	if _, err := Spec([]byte(`{"a":"\"process\":1","process":{},"b":["process","process"]}`)); err != nil {
		t.Errorf("Spec(keys only in string values) = %v, want decoded", err)
	}
}

// TestDecodeUpdateUnknownFields: an UpdateContainer request with a field
// the API does not define, at the top or in a group, is refused naming
// where; one without is passed on as it is.
func TestDecodeUpdateUnknownFields(t *testing.T) {
	withUnknown := func(m interface{ Marshal() ([]byte, error) }, num protowire.Number) []byte {
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		b = protowire.AppendTag(b, num, protowire.VarintType)
		return protowire.AppendVarint(b, 1)
	}
	mem := withUnknown(&agentv1.MemoryResources{Limit: 1 << 30}, 9)
	nested := protowire.AppendTag([]byte{}, 2, protowire.BytesType)
	nested = protowire.AppendBytes(nested, mem)
	known, err := (&agentv1.UpdateContainerRequest{ContainerId: "a", Memory: &agentv1.MemoryResources{Limit: 1 << 30}, Pids: &agentv1.PidsResources{Limit: -1}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		wire    []byte
		wantErr string // "" = decodes
	}{
		{"known fields only", known, ""},
		{"unknown top-level field", withUnknown(&agentv1.UpdateContainerRequest{ContainerId: "a"}, 7), "field 7: "},
		{"unknown field in memory", nested, "memory field 9: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &agentv1.UpdateContainerRequest{}
			if err := r.Unmarshal(tc.wire); err != nil {
				t.Fatal(err)
			}
			got, err := Decode(r)
			if tc.wantErr == "" {
				if err != nil || got != any(r) {
					t.Fatalf("Decode(%v) = %v, %v, want the request itself", r, got, err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrMalformed) || !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Fatalf("Decode(%v) = %v, want an ErrMalformed starting %q", r, err, tc.wantErr)
			}
		})
	}
}
