package policy

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// docsDir holds the documented examples and the test policy; they live
// with the README in agent/policy.
const docsDir = "../../policy"

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(docsDir, "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// edit returns doc with old replaced by new exactly once.
func edit(t testing.TB, doc []byte, old, new string) []byte {
	t.Helper()
	if strings.Count(string(doc), old) != 1 {
		t.Fatalf("test document has %d copies of %q, want 1", strings.Count(string(doc), old), old)
	}
	return []byte(strings.Replace(string(doc), old, new, 1))
}

func TestParse(t *testing.T) {
	web := readTestdata(t, "web.json")
	tests := []struct {
		name    string
		doc     []byte
		wantErr string // substring; "" means valid
	}{
		{"valid", web, ""},
		{"minimal", []byte(`{"version":1}`), ""},
		{"unknown top-level field", edit(t, web, `"version": 1,`, `"version": 1, "allow_all": true,`), `unknown field "allow_all"`},
		{"unknown agent field", edit(t, web, `"stats": true,`, `"stats": true, "exec_anywhere": true,`), `unknown field "exec_anywhere"`},
		{"unknown container field", edit(t, web, `"stdout": true,
      "stderr": false,`, `"stdout": true, "privileged": true,
      "stderr": false,`), `unknown field "privileged"`},
		{"unknown match field", edit(t, web, `{"pattern": "-p[0-9]{1,5}"}`, `{"pattern": "-p[0-9]{1,5}", "glob": "x"}`), `unknown field "glob"`},
		{"empty pattern", edit(t, web, `{"pattern": "-p[0-9]{1,5}"}`, `{"pattern": ""}`), "non-empty pattern"},
		{"bad pattern", edit(t, web, `{"pattern": "-p[0-9]{1,5}"}`, `{"pattern": "(-p"}`), `pattern "(-p"`},
		{"match is a number", edit(t, web, `"/bin/httpd"`, `7`), "want a string"},
		{"trailing data", append(append([]byte{}, web...), []byte(`{}`)...), "data after the JSON document"},
		{"version 2", edit(t, web, `"version": 1`, `"version": 2`), "version 2: this agent reads version 1"},
		{"no version", []byte(`{}`), "version 0"},
		{"bad layer hash", edit(t, web, `"1111111111111111111111111111111111111111111111111111111111111111"`, `"11"`), "containers[web].rootfs.layers[0]"},
		{"upper-case layer hash", edit(t, web, `"1111111111111111111111111111111111111111111111111111111111111111"`, `"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"`), "64 lower-case hex digits"},
		{"two rootfs sources", edit(t, web, `"rootfs": {"guest_directory"`, `"rootfs": {"layers": ["1111111111111111111111111111111111111111111111111111111111111111"], "guest_directory"`), "containers[tools].rootfs: give exactly one"},
		{"no rootfs", edit(t, web, `"rootfs": {"guest_directory": "/usr/share/confguest/busybox"},`, ``), "containers[tools].rootfs: give exactly one"},
		{"relative guest directory", edit(t, web, `"/usr/share/confguest/busybox"`, `"usr/share/x"`), "rootfs.guest_directory"},
		{"unclean guest directory", edit(t, web, `"/usr/share/confguest/busybox"`, `"/usr/../etc"`), "rootfs.guest_directory"},
		{"duplicate name", edit(t, web, `"name": "tools"`, `"name": "web"`), `containers[1].name "web": used twice`},
		{"bad name", edit(t, web, `"name": "tools"`, `"name": "../x"`), `containers[1].name "../x"`},
		{"no args", edit(t, web, `"args": ["/bin/sh"],
      "env"`, `"env"`), "containers[tools].args: empty"},
		{"relative cwd", edit(t, web, `"cwd": "/srv"`, `"cwd": "srv"`), "containers[web].cwd"},
		{"bad capability", edit(t, web, `"CAP_KILL"`, `"kill"`), "containers[web].capabilities.bounding[1]"},
		{"unknown capability set", edit(t, web, `"permitted": [`, `"permited": [`), `unknown field "permited"`},
		{"relative mount", edit(t, web, `"destination": "/tmp"`, `"destination": "tmp"`), "containers[web].mounts[1].destination"},
		{"mount without type", edit(t, web, `"type": "tmpfs"`, `"type": ""`), "containers[web].mounts[1].type"},
		{"bad sysctl", edit(t, web, `"net.ipv4.ping_group_range"`, `"../x"`), "containers[web].sysctls"},
		{"empty exec", edit(t, web, `{"args": ["/bin/sh"], "stdin": true, "tty": true}`, `{"args": []}`), "containers[web].exec[1].args: empty"},
		{"relative exec cwd", edit(t, web, `"cwd": "/", "env"`, `"cwd": "x", "env"`), "containers[web].exec[2].cwd"},
		{"old require_seccomp", edit(t, web, `"no_new_privileges": true,`, `"require_seccomp": true,`), `unknown field "require_seccomp"`},
		{"seccomp not a hash", edit(t, web, `"no_new_privileges": true,`, `"seccomp": "default",`), `containers[web].seccomp "default"`},
		{"seccomp short hash", edit(t, web, `"no_new_privileges": true,`, `"seccomp": "sha256:abc",`), "containers[web].seccomp"},
		{"seccomp hash", edit(t, web, `"no_new_privileges": true,`, `"seccomp": "sha256:`+strings.Repeat("ab", 32)+`",`), ""},
		{"rlimit name", edit(t, web, `"no_new_privileges": true,`, `"rlimits": [{"type": "nofile", "hard": 1, "soft": 1}],`), "containers[web].rlimits[0].type"},
		{"rlimit soft above hard", edit(t, web, `"no_new_privileges": true,`, `"rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1, "soft": 2}],`), "containers[web].rlimits[0]: soft limit"},
		{"oom score out of range", edit(t, web, `"no_new_privileges": true,`, `"oom_score_adj": -1001,`), "containers[web].oom_score_adj -1001"},
		{"umask too large", edit(t, web, `"uid": 1000, "gid": 1000}`, `"uid": 1000, "gid": 1000, "umask": 4095}`), "containers[web].user.umask"},
		{"uid mappings without gid mappings", edit(t, web, `"no_new_privileges": true,`, `"uid_mappings": [{"container_id": 0, "host_id": 100000, "size": 65536}],`), "containers[web].uid_mappings, gid_mappings: give both"},
		{"empty mapping", edit(t, web, `"no_new_privileges": true,`, `"uid_mappings": [{"container_id": 0, "host_id": 1, "size": 0}], "gid_mappings": [{"container_id": 0, "host_id": 1, "size": 1}],`), "uid_mappings[0].size"},
		{"mount mapping without gid", edit(t, web, `"options": ["nosuid", "nodev", "mode=1777"]}`, `"options": ["nosuid", "nodev", "mode=1777"], "uid_mappings": [{"container_id": 0, "host_id": 1, "size": 1}]}`), "containers[web].mounts[1].uid_mappings"},
		{"relative masked path", edit(t, web, `"no_new_privileges": true,`, `"masked_paths": ["proc/kcore"],`), "containers[web].masked_paths[0]"},
		{"not an object", []byte(`[]`), "cannot unmarshal array"},
		{"too large", append([]byte(`{"version":1}`), make([]byte, MaxSize)...), "at most"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse(tc.doc)
			if tc.wantErr == "" {
				if err != nil || p == nil {
					t.Fatalf("Parse(%s) = %v, %v, want a policy", tc.name, p, err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidPolicy) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Parse(%s) = %v, want an ErrInvalidPolicy naming %q", tc.name, err, tc.wantErr)
			}
		})
	}
}

func TestParseReadsFields(t *testing.T) {
	p, err := Parse(readTestdata(t, "web.json"))
	if err != nil {
		t.Fatal(err)
	}
	web := p.Containers[0]
	if !p.Agent.Stats || p.Agent.Shutdown || p.Agent.ReplacePolicy {
		t.Errorf("Agent = %+v, want stats only", p.Agent)
	}
	if web.User.UID != 1000 || web.WorkingDir() != "/srv" || !web.Attestation || !web.Stdout || web.Stderr {
		t.Errorf("containers[web] = %+v, want uid 1000, cwd /srv, attestation, stdout only", web)
	}
	if p.Containers[1].WorkingDir() != "/" {
		t.Errorf("containers[tools].WorkingDir() = %q, want the default /", p.Containers[1].WorkingDir())
	}
	args := []struct {
		m    Match
		s    string
		want bool
	}{
		{web.Args[0], "/bin/httpd", true},
		{web.Args[0], "/bin/httpd ", false},
		{web.Args[1], "-p8080", true},
		{web.Args[1], "-p", false},
		{web.Args[1], "x-p80", false}, // patterns are anchored
		{web.Args[1], "-p80x", false},
		{web.Args[1], "-p80\n-p81", false},
	}
	for _, a := range args {
		if got := a.m.Matches(a.s); got != a.want {
			t.Errorf("Match(%+v).Matches(%q) = %v, want %v", a.m, a.s, got, a.want)
		}
	}
}

func TestCapabilitiesReadsBothForms(t *testing.T) {
	tests := []struct {
		in   string
		want Capabilities
	}{
		{`["CAP_KILL"]`, Capabilities{Bounding: []string{"CAP_KILL"}, Effective: []string{"CAP_KILL"}, Permitted: []string{"CAP_KILL"}}},
		{`{"bounding": ["CAP_KILL"], "ambient": ["CAP_CHOWN"]}`, Capabilities{Bounding: []string{"CAP_KILL"}, Ambient: []string{"CAP_CHOWN"}}},
		{`{}`, Capabilities{}},
		{`[]`, Capabilities{Bounding: []string{}, Effective: []string{}, Permitted: []string{}}},
	}
	for _, tc := range tests {
		var got Capabilities
		if err := json.Unmarshal([]byte(tc.in), &got); err != nil {
			t.Fatalf("Unmarshal(%s) = %v", tc.in, err)
		}
		for i, set := range got.Sets() {
			if want := tc.want.Sets()[i]; strings.Join(set.Caps, ",") != strings.Join(want.Caps, ",") {
				t.Errorf("Unmarshal(%s).%s = %q, want %q", tc.in, set.Name, set.Caps, want.Caps)
			}
		}
	}
}

func TestMatchJSONRoundTrip(t *testing.T) {
	for _, in := range []string{`"/bin/sh"`, `{"pattern":"-p[0-9]+"}`, `""`} {
		var m Match
		if err := json.Unmarshal([]byte(in), &m); err != nil {
			t.Fatalf("Unmarshal(%s) = %v", in, err)
		}
		out, err := json.Marshal(m)
		if err != nil || string(out) != in {
			t.Errorf("Marshal(Unmarshal(%s)) = %s, %v, want %s", in, out, err, in)
		}
	}
}

func TestHash(t *testing.T) {
	// SHA-256("") and SHA-256("abc") from FIPS 180-2.
	tests := []struct{ doc, want string }{
		{"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
	}
	for _, tc := range tests {
		if got := HashHex([]byte(tc.doc)); got != tc.want {
			t.Errorf("HashHex(%q) = %s, want %s", tc.doc, got, tc.want)
		}
	}
}

func TestExamplesParse(t *testing.T) {
	examples, err := filepath.Glob(filepath.Join(docsDir, "examples", "*.json"))
	if err != nil || len(examples) == 0 {
		t.Fatalf("examples/*.json = %v, %v, want the documented examples", examples, err)
	}
	for _, e := range examples {
		b, err := os.ReadFile(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(b); err != nil {
			t.Errorf("Parse(%s) = %v", e, err)
		}
	}
}
