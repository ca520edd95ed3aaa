// Package kbuild builds the guest kernel: it unpacks a pinned Debian kernel source package,
// merges the guest fragment onto tinyconfig, checks that no option of the fragment was
// dropped, and builds a reproducible bzImage with everything built in. Builds are cached
// by a key over the source package, the fragment, the compiler and the recipe.
package kbuild

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"confguest/build/toolpin"
	"confguest/kernelcfg/kconfig"
)

// Config says what to build and where to cache it.
type Config struct {
	Source       Source
	Fragment     []byte
	FragmentName string    // names the fragment in messages, e.g. kernelcfg/guest.config
	CacheDir     string    // builds go to CacheDir/<key>, unpacked sources to CacheDir/src
	Jobs         int       // make -j; 2 when zero
	Progress     io.Writer // stage lines and elapsed times; nil discards them
	ConfigOnly   bool      // stop after checking the final .config (Result.Config); build nothing
	KeepTree     bool      // keep the build tree (<entry>/build) for comparing builds

	// FinalConfig is the committed final .config (kernelcfg/final.config): the build stops
	// when Kconfig's answer differs, before compiling. Nil skips the comparison.
	FinalConfig     []byte
	FinalConfigName string // names it in messages

	// Toolchain describes the pinned tools that write the kernel's bytes, one per line
	// (see build/toolpin); kernel.json records it and a cache hit must match it.
	Toolchain []string
}

// Info describes a built kernel; it is written as kernel.json.
type Info struct {
	SourcePackage  string   `json:"source_package"`
	Version        string   `json:"version"`
	DebSHA256      string   `json:"deb_sha256"`
	KernelRelease  string   `json:"kernel_release"`
	ConfigSHA256   string   `json:"config_sha256"`
	FragmentSHA256 string   `json:"fragment_sha256"`
	BzImageSHA256  string   `json:"bzimage_sha256"`
	BzImageSize    int64    `json:"bzimage_size"`
	BuildSeconds   float64  `json:"build_seconds"`
	Compiler       string   `json:"compiler"`
	Toolchain      []string `json:"toolchain"`
	Builder        string   `json:"builder"`
	CacheKey       string   `json:"cache_key"`
}

// Result is a built (or cached) kernel.
type Result struct {
	Info    Info
	BzImage string // path of the bzImage in the cache
	Config  string // path of its final .config in the cache
	Log     string // path of the build log
	Cached  bool   // true when no build ran
}

// Build returns the cached kernel for cfg, building it first when the cache has none.
func Build(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Jobs == 0 {
		cfg.Jobs = 2
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.FragmentName == "" {
		cfg.FragmentName = "fragment"
	}
	frag, err := kconfig.ParseFragment(bytes.NewReader(cfg.Fragment))
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", cfg.FragmentName, err)
	}
	if len(frag) == 0 {
		return Result{}, fmt.Errorf("%s: no options: is it the guest kernel fragment?", cfg.FragmentName)
	}
	if err := checkTools(); err != nil {
		return Result{}, err
	}
	compiler, err := compilerVersion(ctx)
	if err != nil {
		return Result{}, err
	}
	key := CacheKey(cfg.Source, cfg.Fragment, compiler)
	dir := filepath.Join(cfg.CacheDir, key)
	res := Result{
		BzImage: filepath.Join(dir, "bzImage"),
		Config:  filepath.Join(dir, "config"),
		Log:     filepath.Join(dir, "build.log"),
	}
	fmt.Fprintf(cfg.Progress, "kernel: %s %s, %s (%d options), cache %s\n", cfg.Source.Package, cfg.Source.Version, cfg.FragmentName, len(frag), dir)

	if err := os.MkdirAll(cfg.CacheDir, 0o755); err != nil {
		return Result{}, fmt.Errorf("creating kernel cache: %w", err)
	}
	unlock, err := lock(dir + ".lock")
	if err != nil {
		return Result{}, err
	}
	defer unlock()

	info, err := readCached(dir)
	if err == nil {
		err = cfg.matches(dir, info)
	}
	if err == nil {
		res.Info, res.Cached = info, true
		fmt.Fprintf(cfg.Progress, "kernel: cache hit, bzImage %s\n", info.BzImageSHA256)
		return res, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(cfg.Progress, "kernel: discarding cache entry: %v\n", err)
	}

	start := time.Now()
	b := &builder{cfg: cfg, dir: dir, logPath: res.Log}
	if err := b.build(ctx, frag); err != nil {
		return Result{}, err
	}
	if cfg.ConfigOnly {
		res.Config = filepath.Join(b.obj, ".config")
		return res, nil
	}
	info, err = b.install(compiler, key, time.Since(start))
	if err != nil {
		return Result{}, err
	}
	res.Info = info
	fmt.Fprintf(cfg.Progress, "kernel: built in %s, bzImage %d bytes, sha256 %s\n", round(time.Since(start)), info.BzImageSize, info.BzImageSHA256)
	return res, nil
}

// matches checks a complete cache entry against what this build must produce: its final
// .config must be cfg.FinalConfig (an entry made where Kconfig probed other tools, say
// pahole, embeds another config), and the tool pins it records must be cfg.Toolchain.
// Entries made before tool pins were recorded carry none and are rebuilt: their kernel.json
// would leave the tool list out of manifest.json, so the image built from such an entry
// differs from one built in a cold cache (it did: the published manifest.json was made from
// one, and a cold build could not reproduce it).
func (cfg Config) matches(dir string, info Info) error {
	if cfg.FinalConfig != nil {
		got, err := os.ReadFile(filepath.Join(dir, "config"))
		if err != nil {
			return fmt.Errorf("cached config: %w", err)
		}
		if !bytes.Equal(got, cfg.FinalConfig) {
			return fmt.Errorf("%s/config (sha256 %s) differs from %s", dir, sha256Hex(got), cfg.FinalConfigName)
		}
	}
	if len(info.Toolchain) == 0 && len(cfg.Toolchain) > 0 {
		return fmt.Errorf("%s was built before tool pins were recorded in kernel.json", dir)
	}
	if !slices.Equal(info.Toolchain, cfg.Toolchain) {
		return fmt.Errorf("%s was built with the tools %q, the pins are %q", dir, info.Toolchain, cfg.Toolchain)
	}
	return nil
}

type builder struct {
	cfg     Config
	dir     string // cache entry
	src     string // unpacked source tree
	obj     string // make O= directory
	logPath string
	log     *os.File
	env     []string
}

func (b *builder) build(ctx context.Context, frag []kconfig.Option) error {
	if err := os.RemoveAll(b.dir); err != nil {
		return fmt.Errorf("clearing %s: %w", b.dir, err)
	}
	b.obj = filepath.Join(b.dir, "build")
	if err := os.MkdirAll(b.obj, 0o755); err != nil {
		return fmt.Errorf("creating build directory: %w", err)
	}
	log, err := os.Create(b.logPath)
	if err != nil {
		return fmt.Errorf("creating build log: %w", err)
	}
	defer log.Close()
	b.log = log
	fmt.Fprintf(b.cfg.Progress, "kernel: log %s\n", b.logPath)

	s := b.cfg.Source
	b.src = filepath.Join(b.cfg.CacheDir, "src", fmt.Sprintf("%s_%s_%s", s.Package, s.Version, s.DebSHA256[:12]))
	err = b.stage("unpack source", func() error {
		if err := os.MkdirAll(filepath.Dir(b.src), 0o755); err != nil {
			return fmt.Errorf("creating source cache: %w", err)
		}
		unlock, err := lock(b.src + ".lock")
		if err != nil {
			return err
		}
		defer unlock()
		return unpack(ctx, s.Tarball, b.src, b.log)
	})
	if err != nil {
		return err
	}
	if b.env, err = reproducibleEnv(b.src); err != nil {
		return err
	}

	make := func(targets ...string) error {
		args := append([]string{"-C", b.src, "O=" + b.obj, "ARCH=x86_64", "LOCALVERSION="}, probeOverrides...)
		args = append(args, targets...)
		return b.run(ctx, b.src, "make", args...)
	}
	if err := b.stage("make tinyconfig", func() error { return make("tinyconfig") }); err != nil {
		return err
	}
	fragPath := filepath.Join(b.dir, "guest.config")
	if err := os.WriteFile(fragPath, b.cfg.Fragment, 0o644); err != nil {
		return fmt.Errorf("writing fragment: %w", err)
	}
	err = b.stage("merge "+b.cfg.FragmentName+" and olddefconfig", func() error {
		merge := filepath.Join(b.src, "scripts/kconfig/merge_config.sh")
		if err := b.run(ctx, b.src, merge, "-m", "-O", b.obj, filepath.Join(b.obj, ".config"), fragPath); err != nil {
			return err
		}
		return make("olddefconfig")
	})
	if err != nil {
		return err
	}
	err = b.stage(fmt.Sprintf("check %d options", len(frag)), func() error {
		return checkConfig(frag, filepath.Join(b.obj, ".config"), b.cfg.FragmentName)
	})
	if err != nil {
		return err
	}
	if b.cfg.FinalConfig != nil {
		err = b.stage("compare the final .config with "+b.cfg.FinalConfigName, func() error {
			got, err := os.ReadFile(filepath.Join(b.obj, ".config"))
			if err != nil {
				return fmt.Errorf("reading final config: %w", err)
			}
			return compareFinal(b.cfg.FinalConfig, got, b.cfg.FinalConfigName)
		})
		if err != nil {
			return err
		}
	}
	if b.cfg.ConfigOnly {
		return nil
	}
	return b.stage(fmt.Sprintf("make -j%d bzImage", b.cfg.Jobs), func() error {
		stop := b.heartbeat("make bzImage")
		defer stop()
		return make("-j"+strconv.Itoa(b.cfg.Jobs), "bzImage")
	})
}

// checkConfig compares the fragment with the final .config and lists every option that
// did not survive.
func checkConfig(frag []kconfig.Option, configPath, fragName string) error {
	f, err := os.Open(configPath)
	if err != nil {
		return fmt.Errorf("reading final config: %w", err)
	}
	defer f.Close()
	final, err := kconfig.ParseConfig(f)
	if err != nil {
		return fmt.Errorf("%s: %w", configPath, err)
	}
	bad := kconfig.Check(frag, final)
	if len(bad) == 0 {
		return nil
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s: %d of %d options are not in the final .config as written; add the options they depend on (see their Kconfig entries) or correct them:", fragName, len(bad), len(frag))
	for _, m := range bad {
		sb.WriteString("\n  " + m.String())
	}
	return errors.New(sb.String())
}

// install copies the results out of the build tree into the cache entry, writes kernel.json
// last (its presence marks a complete entry) and removes the build tree.
func (b *builder) install(compiler, key string, took time.Duration) (Info, error) {
	img, err := os.ReadFile(filepath.Join(b.obj, "arch/x86/boot/bzImage"))
	if err != nil {
		return Info{}, fmt.Errorf("reading built bzImage: %w", err)
	}
	conf, err := os.ReadFile(filepath.Join(b.obj, ".config"))
	if err != nil {
		return Info{}, fmt.Errorf("reading final config: %w", err)
	}
	release, err := os.ReadFile(filepath.Join(b.obj, "include/config/kernel.release"))
	if err != nil {
		return Info{}, fmt.Errorf("reading kernel release: %w", err)
	}
	s := b.cfg.Source
	info := Info{
		SourcePackage:  s.Package,
		Version:        s.Version,
		DebSHA256:      s.DebSHA256,
		KernelRelease:  strings.TrimSpace(string(release)),
		ConfigSHA256:   sha256Hex(conf),
		FragmentSHA256: sha256Hex(b.cfg.Fragment),
		BzImageSHA256:  sha256Hex(img),
		BzImageSize:    int64(len(img)),
		BuildSeconds:   float64(took.Round(100*time.Millisecond)) / float64(time.Second),
		Compiler:       compiler,
		Toolchain:      b.cfg.Toolchain,
		Builder:        BuilderVersion,
		CacheKey:       key,
	}
	if err := os.WriteFile(filepath.Join(b.dir, "bzImage"), img, 0o644); err != nil {
		return Info{}, fmt.Errorf("caching bzImage: %w", err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, "config"), conf, 0o644); err != nil {
		return Info{}, fmt.Errorf("caching config: %w", err)
	}
	if err := writeJSON(filepath.Join(b.dir, "kernel.json"), info); err != nil {
		return Info{}, err
	}
	if b.cfg.KeepTree {
		return info, nil
	}
	if err := os.RemoveAll(b.obj); err != nil {
		return Info{}, fmt.Errorf("removing build tree: %w", err)
	}
	return info, nil
}

// readCached returns the Info of a complete cache entry whose bzImage still matches it.
func readCached(dir string) (Info, error) {
	data, err := os.ReadFile(filepath.Join(dir, "kernel.json"))
	if err != nil {
		return Info{}, err
	}
	var info Info
	if err := json.Unmarshal(data, &info); err != nil {
		return Info{}, fmt.Errorf("%s/kernel.json: %w", dir, err)
	}
	img, err := os.ReadFile(filepath.Join(dir, "bzImage"))
	if err != nil {
		return Info{}, fmt.Errorf("cached bzImage: %w", err)
	}
	if got := sha256Hex(img); got != info.BzImageSHA256 {
		return Info{}, fmt.Errorf("%s/bzImage: sha256 %s, kernel.json says %s", dir, got, info.BzImageSHA256)
	}
	return info, nil
}

// WriteOutputs copies the bzImage to bzImage and writes the Info to infoPath as JSON;
// an empty path skips that output.
func WriteOutputs(res Result, bzImage, infoPath string) error {
	if bzImage != "" {
		img, err := os.ReadFile(res.BzImage)
		if err != nil {
			return fmt.Errorf("reading cached bzImage: %w", err)
		}
		if err := writeFile(bzImage, img); err != nil {
			return err
		}
	}
	if infoPath != "" {
		return writeJSON(infoPath, res.Info)
	}
	return nil
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", path, err)
	}
	return writeFile(path, append(data, '\n'))
}

// writeFile writes data to path through a temporary file and a rename, so a reader never
// sees a partial file.
func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// compilerVersion is the first line of `gcc --version` for the gcc in BuildPATH.
func compilerVersion(ctx context.Context) (string, error) {
	gcc, err := lookBuildPath("gcc")
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, gcc, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("asking gcc for its version: %w", err)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(first), nil
}

// lookBuildPath finds program in BuildPATH.
func lookBuildPath(program string) (string, error) {
	p, err := toolpin.LookPath(program, BuildPATH)
	if err != nil {
		return "", fmt.Errorf("%w: install it with make setup", err)
	}
	return p, nil
}

// lock takes an exclusive flock on path, waiting for another builder that holds it.
func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
