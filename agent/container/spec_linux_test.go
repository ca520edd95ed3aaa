package container

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestCheckSpecNamesTheField(t *testing.T) {
	owned := t.TempDir()
	if err := os.Mkdir(filepath.Join(owned, "vol"), 0o755); err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	tests := []struct {
		name      string
		edit      func(s *specs.Spec)
		wantField string // empty: valid
	}{
		{name: "example spec is valid", edit: func(s *specs.Spec) {}},
		{name: "no spec", wantField: "spec_json"},
		{name: "no process", edit: func(s *specs.Spec) { s.Process = nil }, wantField: "process"},
		{name: "no args", edit: func(s *specs.Spec) { s.Process.Args = nil }, wantField: "process.args"},
		{name: "relative cwd", edit: func(s *specs.Spec) { s.Process.Cwd = "tmp" }, wantField: "process.cwd"},
		{name: "bad env", edit: func(s *specs.Spec) { s.Process.Env = append(s.Process.Env, "NOEQUALS") }, wantField: "process.env[2]"},
		{name: "unknown rlimit", edit: func(s *specs.Spec) { s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_BOGUS"}} }, wantField: "process.rlimits[0].type"},
		{name: "no linux", edit: func(s *specs.Spec) { s.Linux = nil }, wantField: "linux"},
		{name: "hooks", edit: func(s *specs.Spec) { s.Hooks = &specs.Hooks{Poststart: []specs.Hook{{Path: "/bin/true"}}} }, wantField: "hooks"},
		{name: "join namespace", edit: func(s *specs.Spec) { s.Linux.Namespaces[0].Path = "/proc/1/ns/pid" }, wantField: "linux.namespaces[0].path"},
		{name: "relative mount destination", edit: func(s *specs.Spec) { s.Mounts[0].Destination = "proc" }, wantField: "mounts[0].destination"},
		{name: "bind from agent dir", edit: func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: filepath.Join(owned, "vol"), Options: []string{"rbind"}})
		}},
		{name: "bind from elsewhere", edit: func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Source: outside, Options: []string{"bind"}})
		}, wantField: "mounts[7].source"},
		{name: "bind escaping with dotdot", edit: func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: owned + "/../" + filepath.Base(outside)})
		}, wantField: "mounts[7].source"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s *specs.Spec
			if tc.edit != nil {
				s = specconv.Example()
				tc.edit(s)
			}
			err := checkSpec(s, []string{owned})
			if tc.wantField == "" {
				if err != nil {
					t.Fatalf("checkSpec(%s) = %v, want nil", tc.name, err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.wantField || !errors.Is(err, ErrInvalid) {
				t.Fatalf("checkSpec(%s) = %v, want a FieldError for %q", tc.name, err, tc.wantField)
			}
			if !strings.HasPrefix(err.Error(), tc.wantField+":") {
				t.Errorf("error %q does not start with the field name %q", err, tc.wantField)
			}
		})
	}
}
