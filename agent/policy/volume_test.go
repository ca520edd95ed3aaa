package policy

import (
	"encoding/json"
	"strings"
	"testing"

	agentv1 "confguest/agent/api/v1/wire"
)

// withVolumes is createWeb("b") carrying vs.
func withVolumes(vs ...*agentv1.Volume) *agentv1.CreateContainerRequest {
	r := createWeb("b", nil)
	r.Volumes = vs
	return r
}

func filesAt(dest string) *agentv1.Volume {
	return &agentv1.Volume{Destination: dest, ReadOnly: true, Files: &agentv1.Files{Entries: []*agentv1.FileEntry{{Mode: 0o644, Data: []byte("x")}}}}
}

func emptyDirAt(dest string) *agentv1.Volume {
	return &agentv1.Volume{Destination: dest, EmptyDir: &agentv1.EmptyDir{Name: "cache"}}
}

// TestVolumesAuthorize: a container takes host-provided files or an emptyDir only at a
// destination its entry lists with that kind; a denial names the destination.
func TestVolumesAuthorize(t *testing.T) {
	entry := `"name": "web", "volumes": [{"destination": "/etc/hosts", "kind": "files"}, {"destination": "/cache", "kind": "empty_dir"}],`
	for _, tc := range []struct {
		name     string
		entry    string // replaces `"name": "web",` in testdata/web.json ("" keeps it)
		req      *agentv1.CreateContainerRequest
		wantRule string // "" means allowed
	}{
		{"none", "", withVolumes(), ""},
		{"listed files and emptyDir", entry, withVolumes(filesAt("/etc/hosts"), emptyDirAt("/cache")), ""},
		{"a subset", entry, withVolumes(emptyDirAt("/cache")), ""},
		{"files where the entry lists none", "", withVolumes(filesAt("/etc/hosts")), `volumes[0].destination: mount destination "/etc/hosts" may not take host-provided files`},
		{"an unlisted destination", entry, withVolumes(filesAt("/etc/hosts"), filesAt("/etc/config")), `volumes[1].destination: mount destination "/etc/config"`},
		{"files where an emptyDir is listed", entry, withVolumes(filesAt("/cache")), `mount destination "/cache" may not take host-provided files`},
		{"an emptyDir where files are listed", entry, withVolumes(emptyDirAt("/etc/hosts")), `mount destination "/etc/hosts" may not take an emptyDir volume`},
		{"a traversal of a listed destination", entry, withVolumes(filesAt("/etc/../etc/hosts")), `mount destination "/etc/../etc/hosts"`},
		{"both kinds at once", entry, withVolumes(&agentv1.Volume{Destination: "/cache", Files: &agentv1.Files{}, EmptyDir: &agentv1.EmptyDir{Name: "c"}}), `want exactly one of files and empty_dir`},
		{"neither kind", entry, withVolumes(&agentv1.Volume{Destination: "/cache"}), `want exactly one of files and empty_dir`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := readTestdata(t, "web.json")
			if tc.entry != "" {
				doc = edit(t, doc, `"name": "web",`, tc.entry)
			}
			checkCreate(t, doc, tc.req, tc.wantRule)
		})
	}
}

// TestVolumesParse: volumes lists clean absolute destinations other than /, once each, of a
// known kind.
func TestVolumesParse(t *testing.T) {
	for _, tc := range []struct {
		value, wantErr string
	}{
		{`[{"destination": "/etc/hosts", "kind": "files"}, {"destination": "/data", "kind": "empty_dir"}]`, ""},
		{`[]`, ""},
		{`[{"destination": "etc/hosts", "kind": "files"}]`, `volumes[0].destination "etc/hosts"`},
		{`[{"destination": "/", "kind": "empty_dir"}]`, `volumes[0].destination "/"`},
		{`[{"destination": "/a/../b", "kind": "files"}]`, `volumes[0].destination "/a/../b"`},
		{`[{"destination": "/a", "kind": "hostPath"}]`, `volumes[0].kind "hostPath"`},
		{`[{"destination": "/a", "kind": "files"}, {"destination": "/a", "kind": "empty_dir"}]`, `volumes[1].destination "/a": listed twice`},
		{`[{"destination": "/dev/termination-log", "kind": "files", "read_back": true}]`, ""},
		{`[{"destination": "/a", "kind": "empty_dir", "read_back": true}]`, `volumes[0].read_back: only a files volume`},
	} {
		doc := edit(t, readTestdata(t, "web.json"), `"name": "web",`, `"name": "web", "volumes": `+tc.value+`,`)
		_, err := Parse(doc)
		if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("Parse(volumes %s) = %v, want %q", tc.value, err, tc.wantErr)
		}
	}
}

// TestVolumesDenialOfTheContainersEntry: among entries on the same rootfs, the denial
// reported is that of the entry that admits the spec but not a volume (the container's
// own, in a pod policy with an entry per container), naming the destination, not the
// first entry's unrelated one.
func TestVolumesDenialOfTheContainersEntry(t *testing.T) {
	p, err := Parse(readTestdata(t, "web.json"))
	if err != nil {
		t.Fatal(err)
	}
	other := p.Containers[0]
	other.Name = "other"
	other.Args = append(other.Args, Match{Exact: "--other"})
	p.Containers = append([]Container{other}, p.Containers...)
	doc, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	checkCreate(t, doc, withVolumes(filesAt("/etc/config")), `containers[web].volumes: volumes[0].destination: mount destination "/etc/config"`)
	checkCreate(t, doc, createWeb("b", nil), "")
}
