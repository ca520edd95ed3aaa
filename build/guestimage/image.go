// Package guestimage assembles the confguest guest image from source, bit-for-bit
// reproducibly: it builds the guest's Go programs with a fixed environment, packs /init
// into a sorted, normalised initramfs, builds the erofs root filesystem with its dm-verity
// tree, writes the kernel command line that carries the verity parameters, and describes
// every artifact and every input in manifest.json and SHA256SUMS.
package guestimage

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"time"

	"confguest/build/toolpin"
	"confguest/rootfs"
)

// Config says where the sources, the kernel and the outputs are.
type Config struct {
	SrcDir     string        // module root of confguest
	OutDir     string        // where the artifacts go
	Kernel     string        // bzImage built by kernelcfg/cmd/buildkernel
	KernelInfo string        // its kernel.json
	Toolchain  *toolpin.Lock // build/toolchain.lock
	Machine    toolpin.Machine
	Log        io.Writer // progress lines
}

// Artifact names in the image directory.
const (
	KernelFile    = "bzImage"
	InitramfsFile = "initramfs.cpio.gz"
	RootfsFile    = "rootfs.img"
	CmdlineFile   = "cmdline"
	ManifestFile  = "manifest.json"
	SumsFile      = "SHA256SUMS"
)

// RootfsBudget is the size budget of rootfs.img (erofs data and hash tree): the guest's
// userspace TCB is kept small enough to audit.
const RootfsBudget = 24 << 20

// BaseCmdline is the part of the kernel command line that does not depend on the root
// filesystem. The serial console is the only console; a kernel panic powers the VM off.
const BaseCmdline = "console=ttyS0 panic=-1"

// Cmdline returns the kernel command line for a root filesystem with verity parameters p
// on the first virtio-blk disk. Every confguest.* parameter is read by PID 1.
func Cmdline(p rootfs.Params) string {
	return fmt.Sprintf("%s confguest.root=/dev/vda confguest.roothash=%s confguest.salt=%s confguest.datablocks=%d confguest.hashoffset=%d confguest.loglevel=info",
		BaseCmdline, p.RootHash, p.Salt, p.DataBlocks, p.HashOffset)
}

// rootDirs are the directories of the read-only root filesystem: mount points PID 1 fills
// with proc, sys, dev, tmpfs and cgroup2, and the agent's binary directory.
var rootDirs = []string{"dev", "etc", "proc", "run", "sbin", "sys", "tmp", "var"}

type step struct {
	name string
	run  func(ctx context.Context) error
}

// Build assembles the image into cfg.OutDir and returns its manifest.
func Build(ctx context.Context, cfg Config) (*Manifest, error) {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("create output directory: %w", err)
	}
	work, err := os.MkdirTemp("", "confguest-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	m := &Manifest{GoVersion: runtime.Version()}
	bins := map[string]string{}
	steps := []step{
		{"check the build tools against " + cfg.Toolchain.Path, func(ctx context.Context) error {
			if err := toolpin.Check(ctx, cfg.Toolchain.Path, cfg.Toolchain.For(toolpin.Init, toolpin.Agent, toolpin.Rootfs), cfg.Machine); err != nil {
				return err
			}
			m.Inputs.Toolchain = cfg.Toolchain.Pins
			return nil
		}},
		{"build guest programs", func(ctx context.Context) error {
			for _, b := range guestBinaries {
				out := filepath.Join(work, b.name)
				if err := buildGo(ctx, cfg.SrcDir, b, out); err != nil {
					return err
				}
				in, err := readBuildInputs(b.name, out)
				if err != nil {
					return err
				}
				m.Inputs.GoBinaries = append(m.Inputs.GoBinaries, in)
				m.Inputs.GoToolchain = in.GoVersion
				bins[b.name] = out
			}
			return nil
		}},
		{"write " + InitramfsFile, func(context.Context) error {
			init, err := os.ReadFile(bins["init"])
			if err != nil {
				return err
			}
			data, err := writeInitramfs([]initramfsFile{{name: "init", data: init, perm: 0o755}})
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(cfg.OutDir, InitramfsFile), data, 0o644)
		}},
		{"build " + RootfsFile + " (erofs + dm-verity)", func(ctx context.Context) error {
			stage := filepath.Join(work, "root")
			if err := stageRoot(stage, bins["agent"], bins["libct"]); err != nil {
				return err
			}
			p, err := rootfs.Build(ctx, stage, filepath.Join(cfg.OutDir, RootfsFile), rootfs.WithMaxSize(RootfsBudget))
			if err != nil {
				return err
			}
			m.Verity = p
			return nil
		}},
		{"copy kernel", func(context.Context) error {
			if err := copyFile(cfg.Kernel, filepath.Join(cfg.OutDir, KernelFile)); err != nil {
				return fmt.Errorf("%w: build it with make kernel", err)
			}
			if err := readKernelInfo(cfg.KernelInfo, &m.Kernel); err != nil {
				return err
			}
			return checkKernelTools(m.Kernel, cfg.Toolchain)
		}},
		{"write " + CmdlineFile, func(context.Context) error {
			m.Cmdline = Cmdline(m.Verity)
			return os.WriteFile(filepath.Join(cfg.OutDir, CmdlineFile), []byte(m.Cmdline+"\n"), 0o644)
		}},
		{"write " + IGVMFile + " (direct boot for Cloud Hypervisor)", func(context.Context) error {
			return writeIGVM(cfg.OutDir, m.Cmdline)
		}},
		{"write " + MeasurementFile + " (SEV-SNP launch digests)", func(ctx context.Context) error {
			return writeMeasurements(ctx, cfg.SrcDir, cfg.OutDir, m.Cmdline)
		}},
		{"record Debian inputs", func(context.Context) error {
			pinned, err := pinnedPackages(filepath.Join(cfg.SrcDir, "build", "packages.lock"), map[string]string{
				"linux-source-6.12": "kernel source of bzImage",
				"ovmf-amdsev":       "firmware of the QEMU SEV-SNP launch in measurement.json",
			})
			if err != nil {
				return err
			}
			m.Inputs.DebianPackages = append(m.Inputs.DebianPackages, pinned...)
			return nil
		}},
		{"write " + ManifestFile + " and " + SumsFile, func(context.Context) error {
			return writeManifest(cfg.OutDir, m)
		}},
	}

	start := time.Now()
	for _, s := range steps {
		t := time.Now()
		fmt.Fprintf(cfg.Log, "==> %s\n", s.name)
		if err := s.run(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		fmt.Fprintf(cfg.Log, "    done in %.1fs\n", time.Since(t).Seconds())
	}
	fmt.Fprintf(cfg.Log, "==> image in %s (%.1fs)\n", cfg.OutDir, time.Since(start).Seconds())
	for _, a := range m.Artifacts {
		fmt.Fprintf(cfg.Log, "    %-20s %10d bytes (%5.2f MiB)  sha256 %s\n", a.Name, a.Size, float64(a.Size)/(1<<20), a.SHA256)
	}
	return m, nil
}

// stageRoot lays out the root filesystem tree in dir, with the agent and its libcontainer
// helper.
func stageRoot(dir, agent, libct string) error {
	// Modes are set explicitly: the builder's umask must not reach the image.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	for _, d := range rootDirs {
		mode := os.FileMode(0o755)
		if d == "tmp" {
			mode = 0o777 | os.ModeSticky
		}
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
		if err := os.Chmod(filepath.Join(dir, d), mode); err != nil {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd":     "root:x:0:0:root:/:/sbin/nologin\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n",
		"etc/group":      "root:x:0:\nnogroup:x:65534:\n",
		"etc/hostname":   "confguest\n",
		"etc/os-release": "NAME=confguest\nID=confguest\nPRETTY_NAME=\"confguest guest image\"\n",
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(files[n]), 0o600); err != nil {
			return err
		}
		if err := os.Chmod(filepath.Join(dir, n), 0o644); err != nil {
			return err
		}
	}
	for _, b := range []struct{ src, name string }{{agent, "agent"}, {libct, "libct"}} {
		exe := filepath.Join(dir, "sbin", b.name)
		if err := copyFile(b.src, exe); err != nil {
			return err
		}
		if err := os.Chmod(exe, 0o755); err != nil {
			return err
		}
	}
	return recordDigest(filepath.Join(dir, "sbin", "agent"))
}

// recordDigest writes exe's SHA-256 beside it (exe + ".sha256", sha256sum's format), where
// the agent reads the digest its Version call reports (agent/server.DigestSuffix) instead
// of hashing its own binary through dm-verity in the guest.
func recordDigest(exe string) error {
	_, sum, err := fileSHA256(exe)
	if err != nil {
		return err
	}
	record := exe + ".sha256"
	line := fmt.Sprintf("%s  %s\n", sum, filepath.Base(exe))
	if err := os.WriteFile(record, []byte(line), 0o600); err != nil {
		return err
	}
	return os.Chmod(record, 0o644)
}

// readKernelInfo fills k from the builder's kernel.json.
func readKernelInfo(path string, k *KernelInfo) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read kernel build info: %w: build the kernel with make kernel", err)
	}
	if err := json.Unmarshal(data, k); err != nil {
		return fmt.Errorf("parse kernel build info %s: %w", path, err)
	}
	if k.Version == "" || k.ConfigSHA256 == "" {
		return fmt.Errorf("kernel build info %s lacks version or config_sha256: rebuild with make kernel", path)
	}
	return nil
}

// checkKernelTools refuses a bzImage whose kernel.json lists other tool pins than the
// lock's kernel pins: a kernel cached before a pin changed. A kernel.json without pins comes
// from a cache entry made before pins were recorded (buildkernel checked its config).
func checkKernelTools(k KernelInfo, lock *toolpin.Lock) error {
	want := toolpin.Lines(lock.For(toolpin.Kernel))
	if len(k.Toolchain) > 0 && !slices.Equal(k.Toolchain, want) {
		return fmt.Errorf("the bzImage was built with the tools %q, %s pins %q for the kernel: rebuild it with make kernel", k.Toolchain, lock.Path, want)
	}
	return nil
}

// writeManifest hashes the artifacts and writes manifest.json and SHA256SUMS.
func writeManifest(dir string, m *Manifest) error {
	arts, err := describeArtifacts(dir, []string{KernelFile, InitramfsFile, RootfsFile, CmdlineFile, IGVMFile, MeasurementFile})
	if err != nil {
		return err
	}
	m.Artifacts = arts
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), append(data, '\n'), 0o644); err != nil {
		return err
	}
	all, err := describeArtifacts(dir, append(artifactNames(arts), ManifestFile))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, SumsFile), []byte(sha256Sums(all)), 0o644)
}

func artifactNames(arts []Artifact) []string {
	var names []string
	for _, a := range arts {
		names = append(names, a.Name)
	}
	return names
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return out.Close()
}
