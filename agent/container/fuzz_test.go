package container

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/opencontainers/runc/libcontainer/specconv"

	"confguest/agent/request"
)

// FuzzCheckSpec feeds arbitrary spec and process JSON, decoded as the
// RPC edge decodes it, to the validators: they must never panic, and what
// they refuse must be an ErrInvalid that names a field.
//
//	go test -run '^$' -fuzz FuzzCheckSpec -fuzztime 1m ./agent/container
func FuzzCheckSpec(f *testing.F) {
	good, _ := json.Marshal(specconv.Example())
	f.Add(good)
	f.Add([]byte(`{"process":{"args":["sh"],"cwd":"/","rlimits":[{"type":"RLIMIT_NOFILE","hard":1,"soft":2}]},"linux":{}}`))
	f.Add([]byte(`{"process":{"args":["sh"],"cwd":"/","consoleSize":{"height":70000,"width":1}},"linux":{"namespaces":[{"type":"pid","path":"/proc/1/ns/pid"}]},"mounts":[{"destination":"/x","source":"/etc/../x","options":["rbind"]}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, parse := range []func() error{
			func() error {
				s, err := request.Spec(data)
				if err != nil {
					return nil // refused at the edge
				}
				return checkSpec(s, []string{"/run/confguest/shared"})
			},
			func() error {
				p, err := request.Process(data)
				if err != nil {
					return nil
				}
				return checkExecProcess(p)
			},
		} {
			err := parse()
			var fe *FieldError
			if err != nil && (!errors.Is(err, ErrInvalid) || !errors.As(err, &fe) || fe.Field == "") {
				t.Fatalf("parse(%q) = %v, want nil or a FieldError", data, err)
			}
		}
	})
}
