package policy

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestUpdateResourcesParse: update_resources lists memory, cpu and pids, once each.
func TestUpdateResourcesParse(t *testing.T) {
	for _, tc := range []struct {
		value, wantErr string
	}{
		{`["memory", "cpu", "pids"]`, ""},
		{`[]`, ""},
		{`["memory", "memory"]`, `update_resources[1] "memory": listed twice`},
		{`["devices"]`, `update_resources[0] "devices": want any of`},
		{`["unified"]`, `update_resources[0] "unified"`},
	} {
		doc := edit(t, readTestdata(t, "web.json"), `"name": "web",`, `"name": "web", "update_resources": `+tc.value+`,`)
		_, err := Parse(doc)
		if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("Parse(update_resources %s) = %v, want %q", tc.value, err, tc.wantErr)
		}
	}
}

// TestSysctlsParse: an entry lists only sysctls of a namespace a container can have of its
// own (IPC, network, UTS); one of the whole kernel is refused naming it.
func TestSysctlsParse(t *testing.T) {
	for _, tc := range []struct {
		value, wantErr string
	}{
		{`{"kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "100", "kernel.sem": "250 32000 32 128"}`, ""},
		{`{"net.ipv4.ip_unprivileged_port_start": "0", "kernel.hostname": "a", "kernel.domainname": "b"}`, ""},
		{`{"kernel.panic": "1"}`, `sysctls "kernel.panic": not a sysctl of the container's ipc, network or uts namespace`},
		{`{"vm.overcommit_memory": "2"}`, `sysctls "vm.overcommit_memory"`},
		{`{"kernel.shm_next_id": "1"}`, `sysctls "kernel.shm_next_id"`},
		{`{"fs.mqueue.": "1"}`, `sysctls "fs.mqueue."`},
		{`{"net.": "1"}`, `sysctls "net."`},
		{`{"fs.file-max": "1"}`, `sysctls "fs.file-max"`},
	} {
		doc := edit(t, readTestdata(t, "web.json"), `"sysctls": {"net.ipv4.ping_group_range": "0 0"}`, `"sysctls": `+tc.value)
		_, err := Parse(doc)
		if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("Parse(sysctls %s) = %v, want %q", tc.value, err, tc.wantErr)
		}
	}
}

// TestSysctlNeedsItsNamespace: a sysctl stays in the container only when the container has
// the namespace that holds it; a net.* sysctl of a container in the guest's network
// namespace is refused even where the entry lists it.
func TestSysctlNeedsItsNamespace(t *testing.T) {
	doc := edit(t, readTestdata(t, "web.json"), `"name": "web",`, `"name": "web", "guest_network": true,`)
	inGuestNet := func(s *specs.Spec) { s.Linux.Namespaces = append(s.Linux.Namespaces[:1], s.Linux.Namespaces[2:]...) }
	checkCreate(t, doc, createWeb("a", nil), "")
	checkCreate(t, doc, createWeb("b", inGuestNet), `containers[web].sysctls: spec.linux.sysctl: sysctl "net.ipv4.ping_group_range" needs the container's own or its pod's network namespace`)
	checkCreate(t, doc, createWeb("c", func(s *specs.Spec) { inGuestNet(s); s.Linux.Sysctl = nil }), "")
	checkCreate(t, doc, createWeb("d", func(s *specs.Spec) { s.Linux.Sysctl["kernel.core_pattern"] = "|/bin/x" }), `sysctl "kernel.core_pattern": not a sysctl of the container's ipc, network or uts namespace`)
}
