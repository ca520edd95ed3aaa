package server

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	agentv1 "confguest/agent/api/v1"
	"confguest/agent/container"
)

// BenchmarkTrue runs `true` in a fresh container per iteration: through
// the agent (create, start, wait, delete over ttrpc; overlay rootfs) and
// directly with libcontainer on the same image (create, run, wait,
// destroy). The ratio agent/libcontainer is the agent's overhead.
//
//	go test -run '^$' -bench BenchmarkTrue -benchtime 50x ./agent/server
func BenchmarkTrue(b *testing.B) {
	b.Run("agent", func(b *testing.B) {
		ta := startAgent(b, nil, container.Config{})
		s := spec(b, false, "true")
		rootfs := &agentv1.Rootfs{Source: &agentv1.Rootfs_GuestDirectory{GuestDirectory: ta.image}}
		c := ctx(b)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			id := "b" + strconv.Itoa(i)
			if _, err := ta.client.CreateContainer(c, &agentv1.CreateContainerRequest{ContainerId: id, SpecJson: s, Rootfs: rootfs}); err != nil {
				b.Fatal(err)
			}
			if _, err := ta.client.StartContainer(c, &agentv1.StartContainerRequest{ContainerId: id}); err != nil {
				b.Fatal(err)
			}
			w, err := ta.client.WaitProcess(c, &agentv1.WaitProcessRequest{Process: &agentv1.ProcessRef{ContainerId: id}})
			if err != nil || w.GetExitCode() != 0 {
				b.Fatalf("WaitProcess = %v, %v", w, err)
			}
			if _, err := ta.client.DeleteContainer(c, &agentv1.DeleteContainerRequest{ContainerId: id}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("libcontainer", func(b *testing.B) {
		if os.Geteuid() != 0 {
			b.Skip("needs root")
		}
		dir := b.TempDir()
		image := busyboxImage(b, dir)
		root := filepath.Join(dir, "state")
		var s specs.Spec
		if err := json.Unmarshal(spec(b, false, "true"), &s); err != nil {
			b.Fatal(err)
		}
		s.Root = &specs.Root{Path: image, Readonly: true}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			id := "d" + strconv.Itoa(i)
			s.Linux.CgroupsPath = "/confguest-bench/" + id
			cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: id, Spec: &s})
			if err != nil {
				b.Fatal(err)
			}
			c, err := libcontainer.Create(root, id, cfg)
			if err != nil {
				b.Fatal(err)
			}
			p := &libcontainer.Process{Args: s.Process.Args, Env: s.Process.Env, Cwd: "/", Init: true}
			if err := c.Run(p); err != nil {
				b.Fatal(err)
			}
			if st, err := p.Wait(); err != nil || !st.Success() {
				b.Fatalf("wait = %v, %v", st, err)
			}
			if err := c.Destroy(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
