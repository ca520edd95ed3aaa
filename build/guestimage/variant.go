package guestimage

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"confguest/rootfs"
)

// AgentVariant writes into outDir a guest image that boots the kernel and initramfs of the
// image in imageDir with an agent built from srcDir with extraTags added to AgentTags: a
// root filesystem staged as Build stages it (with the image's libcontainer helper), the command line for its dm-verity
// parameters, and a manifest.json listing the four files. It is for tests that need an
// agent the published image does not have (the faultinject build); its launch
// measurement is not the published one, and its manifest does not record build inputs.
func AgentVariant(ctx context.Context, srcDir, imageDir, outDir string, extraTags ...string) error {
	work, err := os.MkdirTemp("", "confguest-variant-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	agent := filepath.Join(work, "agent")
	if err := BuildAgent(ctx, srcDir, agent, extraTags...); err != nil {
		return err
	}
	libct := filepath.Join(work, "libct")
	if err := BuildLibct(ctx, srcDir, libct); err != nil {
		return err
	}
	stage := filepath.Join(work, "root")
	if err := stageRoot(stage, agent, libct); err != nil {
		return err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	p, err := rootfs.Build(ctx, stage, filepath.Join(outDir, RootfsFile), rootfs.WithMaxSize(RootfsBudget))
	if err != nil {
		return err
	}
	for _, n := range []string{KernelFile, InitramfsFile} {
		if err := copyFile(filepath.Join(imageDir, n), filepath.Join(outDir, n)); err != nil {
			return fmt.Errorf("%w: the variant takes it from the image in %s (make image)", err, imageDir)
		}
	}
	m := Manifest{Verity: p, Cmdline: Cmdline(p)}
	if err := os.WriteFile(filepath.Join(outDir, CmdlineFile), []byte(m.Cmdline+"\n"), 0o644); err != nil {
		return err
	}
	for _, n := range []string{KernelFile, CmdlineFile, InitramfsFile, RootfsFile} {
		size, sum, err := fileSHA256(filepath.Join(outDir, n))
		if err != nil {
			return err
		}
		m.Artifacts = append(m.Artifacts, Artifact{Name: n, Size: size, SHA256: sum})
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(outDir, ManifestFile), append(data, '\n'), 0o644)
}
