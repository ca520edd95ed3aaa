package server

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	agentv1 "confguest/agent/api/v1"
	"confguest/agent/container"
	"confguest/init/devmapper"
)

// passthroughVerity stands in for device-mapper on a host without it: it
// records the verity target the agent asked for and hands back the data
// device itself. The real dm-verity path runs in qemu-tests.
type passthroughVerity struct {
	mu     sync.Mutex
	open   map[string]devmapper.VerityTarget
	opened int
	closed []string
}

func (v *passthroughVerity) Open(ctx context.Context, name string, t devmapper.VerityTarget) (string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.open[name] = t
	v.opened++
	return t.DataDevice, nil
}

// state returns the devices open now, how many opens there were and which
// devices were closed.
func (v *passthroughVerity) state() (open []string, opened int, closed []string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for name := range v.open {
		open = append(open, name)
	}
	return open, v.opened, slices.Clone(v.closed)
}

func (v *passthroughVerity) Close(ctx context.Context, name string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.open, name)
	v.closed = append(v.closed, name)
	return nil
}

// blockAgent starts an agent whose verity devices are v, with the
// busybox image as an erofs file on a loop device that carries the serial
// "layer0"; it returns the agent and the loop device.
func blockAgent(t *testing.T, v *passthroughVerity, linger time.Duration) (*testAgent, string) {
	t.Helper()
	if _, err := exec.LookPath("mkfs.erofs"); err != nil {
		t.Skip("needs mkfs.erofs (apt-get install erofs-utils)")
	}
	sysBlock := t.TempDir()
	ta := startAgent(t, nil, container.Config{Verity: v, SysBlock: sysBlock, LayerLinger: linger})
	img := filepath.Join(t.TempDir(), "layer.erofs")
	if out, err := exec.Command("mkfs.erofs", "-T0", img, ta.image).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.erofs: %v\n%s", err, out)
	}
	out, err := exec.Command("losetup", "--find", "--show", "--read-only", img).Output()
	if err != nil {
		t.Skipf("no loop device: %v", err)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	if err := os.MkdirAll(filepath.Join(sysBlock, filepath.Base(loop)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sysBlock, filepath.Base(loop), "serial"), []byte("layer0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return ta, loop
}

// TestBlockRootfs runs a container from an erofs image on a loop device
// found by its serial, and checks that delete releases the verity device
// and every mount (with no layer linger).
func TestBlockRootfs(t *testing.T) {
	v := &passthroughVerity{open: map[string]devmapper.VerityTarget{}}
	ta, loop := blockAgent(t, v, 0)
	rootHash := strings.Repeat("5a", 32)
	_, err := ta.client.CreateContainer(ctx(t), &agentv1.CreateContainerRequest{
		ContainerId: "blk",
		SpecJson:    writableSpec(t, "sh", "-c", "echo from-erofs > /tmp/x && cat /tmp/x"),
		Rootfs: &agentv1.Rootfs{Source: &agentv1.Rootfs_Block{Block: &agentv1.BlockRootfs{
			Serial: "layer0",
			Verity: &agentv1.Verity{RootHash: rootHash, Salt: "00ff", HashOffset: 8192, DataBlocks: 2},
		}}},
	})
	if err != nil {
		t.Fatalf("CreateContainer(block rootfs) = %v", err)
	}
	open, _, _ := v.state()
	if len(open) != 1 {
		t.Fatalf("verity devices open after create: %q, want one", open)
	}
	got := v.open[open[0]]
	if v := got.Verity; got.DataDevice != loop || v.HashStartBlock() != 3 || v.DataBlocks != 2 || v.RootHash != rootHash || v.Salt != "00ff" {
		t.Errorf("verity target = %+v, want data %s, hash start block 3 (superblock at 8192), 2 data blocks, the root hash and salt sent", got, loop)
	}
	outFn := ta.readOutput(t, "blk", "", agentv1.OutputStream_OUTPUT_STREAM_STDOUT)
	if _, err := ta.client.StartContainer(ctx(t), &agentv1.StartContainerRequest{ContainerId: "blk"}); err != nil {
		t.Fatal(err)
	}
	if s, _ := outFn(); s != "from-erofs\n" {
		t.Errorf("output = %q, want %q", s, "from-erofs\n")
	}
	if _, err := ta.client.DeleteContainer(ctx(t), &agentv1.DeleteContainerRequest{ContainerId: "blk"}); err != nil {
		t.Fatal(err)
	}
	if len(v.open) != 0 || len(v.closed) != 1 {
		t.Errorf("after delete: open verity devices %v, closed %v; want none open, one closed", v.open, v.closed)
	}
	if left := append(leftovers(t, ta.stateDir, "blk", 0), layerMounts(t, ta.stateDir)...); len(left) > 0 {
		t.Errorf("after DeleteContainer, left behind:\n%s", strings.Join(left, "\n"))
	}

	// A serial no disk has: NotFound-style error, nothing left behind.
	_, err = ta.client.CreateContainer(ctx(t), &agentv1.CreateContainerRequest{
		ContainerId: "blk2", SpecJson: spec(t, false, "true"),
		Rootfs: &agentv1.Rootfs{Source: &agentv1.Rootfs_Block{Block: &agentv1.BlockRootfs{
			Serial: "missing", Verity: &agentv1.Verity{RootHash: rootHash, DataBlocks: 2, HashOffset: 8192}}}},
	})
	if err == nil || !strings.Contains(err.Error(), `no disk with serial "missing"`) {
		t.Errorf("CreateContainer(unknown serial) = %v, want an error naming the serial", err)
	}
	if left := leftovers(t, ta.stateDir, "blk2", 0); len(left) > 0 {
		t.Errorf("failed create left behind:\n%s", strings.Join(left, "\n"))
	}
}

// writableSpec is spec with root.readonly false: writes land in the tmpfs
// upper layer of the overlay.
func writableSpec(t testing.TB, args ...string) []byte {
	var m map[string]any
	if err := json.Unmarshal(spec(t, false, args...), &m); err != nil {
		t.Fatal(err)
	}
	m["root"] = map[string]any{"path": "rootfs", "readonly": false}
	b, _ := json.Marshal(m)
	return b
}

// The spec's root.readonly is honoured.
func TestReadonlyRootfs(t *testing.T) {
	ta := startAgent(t, nil, container.Config{})
	for _, tc := range []struct {
		name     string
		spec     []byte
		wantExit int32
	}{
		{"readonly", spec(t, false, "touch", "/x"), 1},
		{"writable", writableSpec(t, "touch", "/x"), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ta.create(t, tc.name, tc.spec, nil)
			if _, err := ta.client.StartContainer(ctx(t), &agentv1.StartContainerRequest{ContainerId: tc.name}); err != nil {
				t.Fatal(err)
			}
			if w := ta.wait(t, tc.name, ""); w.GetExitCode() != tc.wantExit {
				t.Errorf("touch /x on a %s rootfs = exit %d, want %d", tc.name, w.GetExitCode(), tc.wantExit)
			}
		})
	}
}

// TestBlockLayerShared runs containers from one image: containers alive
// together share its verity device and read-only mount, a container
// created while the image lingers after the last delete reuses it, and
// the image is closed once it stayed unused for the linger time, or at
// once when a create fails.
func TestBlockLayerShared(t *testing.T) {
	v := &passthroughVerity{open: map[string]devmapper.VerityTarget{}}
	const linger = 2 * time.Second
	ta, _ := blockAgent(t, v, linger)
	rootfs := &agentv1.Rootfs{Source: &agentv1.Rootfs_Block{Block: &agentv1.BlockRootfs{
		Serial: "layer0", Verity: &agentv1.Verity{RootHash: strings.Repeat("5a", 32), DataBlocks: 2, HashOffset: 8192}}}}
	create := func(id string) {
		t.Helper()
		_, err := ta.client.CreateContainer(ctx(t), &agentv1.CreateContainerRequest{ContainerId: id, SpecJson: spec(t, false, "true"), Rootfs: rootfs})
		if err != nil {
			t.Fatalf("CreateContainer(%s) = %v", id, err)
		}
	}
	remove := func(id string) {
		t.Helper()
		if _, err := ta.client.DeleteContainer(ctx(t), &agentv1.DeleteContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("DeleteContainer(%s) = %v", id, err)
		}
	}
	// Fails after the image is mounted: libcontainer's validator refuses a
	// hostname without a UTS namespace.
	var noUTS map[string]any
	if err := json.Unmarshal(spec(t, false, "true"), &noUTS); err != nil {
		t.Fatal(err)
	}
	l := noUTS["linux"].(map[string]any)
	l["namespaces"] = slices.DeleteFunc(l["namespaces"].([]any), func(ns any) bool { return ns.(map[string]any)["type"] == "uts" })
	bad, _ := json.Marshal(noUTS)
	if _, err := ta.client.CreateContainer(ctx(t), &agentv1.CreateContainerRequest{ContainerId: "bad", SpecJson: bad, Rootfs: rootfs}); code(err) != codes.InvalidArgument {
		t.Fatalf("CreateContainer(hostname without a UTS namespace) = %v, want InvalidArgument", err)
	}
	if open, opened, closed := v.state(); len(open) != 0 || opened != 1 || len(closed) != 1 {
		t.Errorf("after a failed create: open %q after %d opens, closed %q; want the device opened and closed again", open, opened, closed)
	}
	create("one")
	create("two")
	if open, opened, _ := v.state(); len(open) != 1 || opened != 2 {
		t.Errorf("two containers from one image: open %q after %d opens, want one device opened once more", open, opened)
	}
	remove("one")
	remove("two")
	if open, _, closed := v.state(); len(open) != 1 || len(closed) != 1 {
		t.Errorf("right after the last delete: open %q, closed %q; want the device still open", open, closed)
	}
	create("three")
	if _, err := ta.client.StartContainer(ctx(t), &agentv1.StartContainerRequest{ContainerId: "three"}); err != nil {
		t.Fatalf("StartContainer(three) = %v", err)
	}
	if w := ta.wait(t, "three", ""); w.GetExitCode() != 0 {
		t.Errorf("true from a lingering image = exit %d, want 0", w.GetExitCode())
	}
	remove("three")
	if _, opened, _ := v.state(); opened != 2 {
		t.Errorf("a container created while the image lingered: %d opens, want the device reused", opened)
	}
	deadline := time.Now().Add(linger + 10*time.Second)
	for {
		open, _, closed := v.state()
		if len(open) == 0 && len(closed) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v after the last delete: open %q, closed %q; want the device closed once", time.Since(deadline.Add(-linger-10*time.Second)), open, closed)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if m := layerMounts(t, ta.stateDir); len(m) > 0 {
		t.Errorf("after the image was closed, mounts left:\n%s", strings.Join(m, "\n"))
	}
	if ents, _ := os.ReadDir(filepath.Join(ta.stateDir, "layers")); len(ents) > 0 {
		t.Errorf("after the image was closed, %d entries left in %s", len(ents), filepath.Join(ta.stateDir, "layers"))
	}
}

// layerMounts lists the mounts under the agent's shared image mounts.
func layerMounts(t *testing.T, stateDir string) []string {
	t.Helper()
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for line := range strings.Lines(string(mi)) {
		if strings.Contains(line, filepath.Join(stateDir, "layers")+"/") {
			found = append(found, strings.TrimSpace(line))
		}
	}
	return found
}
