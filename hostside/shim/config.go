package shim

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"confguest/hostside/launcher"
	"confguest/hostside/vmm"
)

// DefaultConfigPath is read when CONFGUEST_SHIM_CONFIG is not set. A missing default file
// means the defaults below; a missing file named by the variable is an error.
const DefaultConfigPath = "/etc/confguest/shim.json"

// ConfigEnv names the environment variable that points the shim at its config file. The
// shim inherits containerd's environment, so set it in containerd's service unit.
const ConfigEnv = "CONFGUEST_SHIM_CONFIG"

// Config is the shim's configuration file (JSON; unknown fields are an error). It chooses
// the same backends and options as `confguest run`.
type Config struct {
	// ImageDir is the guest image built by `make image` (default /usr/share/confguest/image).
	ImageDir string `json:"image_dir"`
	// VMM is "qemu" (default) or "cloud-hypervisor".
	VMM string `json:"vmm"`
	// Accel is QEMU's accelerator: "auto" (default: KVM only if a probe guest runs), "kvm"
	// or "tcg".
	Accel string `json:"accel"`
	// CPUs and MemoryMiB size each pod's VM (defaults 1 and 512): a pod without limits
	// gets this size, a pod with limits this much more than they add up to (podSize).
	CPUs      int `json:"cpus"`
	MemoryMiB int `json:"memory_mib"`
	// MaxCPUs and MaxMemoryMiB bound the size of a pod's VM however large its limits
	// (defaults DefaultMaxCPUs and DefaultMaxMemoryMiB).
	MaxCPUs      int `json:"max_cpus"`
	MaxMemoryMiB int `json:"max_memory_mib"`
	// RunDir holds one folder per VM: sockets, console log, container disks, state
	// (default /run/confguest-shim).
	RunDir string `json:"run_dir"`
	// BootTimeoutSeconds bounds boot to agent ready (default 120: TCG is slow).
	BootTimeoutSeconds int `json:"boot_timeout_seconds"`
	// SEVSNP boots guest.igvm as an SEV-SNP guest (Cloud Hypervisor only).
	SEVSNP bool `json:"sev_snp"`
	// Binaries; empty means from PATH (vhost-device-vsock also from the confguest cache).
	QEMU             string `json:"qemu"`
	VhostDeviceVsock string `json:"vhost_device_vsock"`
	CloudHypervisor  string `json:"cloud_hypervisor"`
	// CacheDir remembers host facts such as a KVM that hangs guests.
	CacheDir string `json:"cache_dir"`

	// DiskCacheBytes bounds the cache of container disks in CacheDir/disks (0: 8 GiB;
	// negative: none). Its disks are hard-linked into run_dir when both are on one
	// filesystem, else copied.
	DiskCacheBytes int64 `json:"disk_cache_bytes"`
}

// Default values of Config.
const (
	DefaultImageDir = "/usr/share/confguest/image"
	DefaultRunDir   = "/run/confguest-shim"
)

// LoadConfig reads the config file named by $CONFGUEST_SHIM_CONFIG, else DefaultConfigPath
// if it exists, and fills in defaults.
func LoadConfig() (Config, error) {
	path, named := os.LookupEnv(ConfigEnv)
	if !named || path == "" {
		path, named = DefaultConfigPath, false
	}
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
	case errors.Is(err, os.ErrNotExist) && !named:
		b = []byte("{}")
	default:
		return Config{}, fmt.Errorf("read shim config: %w", err)
	}
	c, err := ParseConfig(bytes.NewReader(b))
	if err != nil {
		return Config{}, fmt.Errorf("shim config %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig decodes a config document and fills in defaults.
func ParseConfig(r io.Reader) (Config, error) {
	var c Config
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("decode: %w", err)
	}
	if dec.More() {
		return Config{}, fmt.Errorf("decode: data after the JSON document")
	}
	if c.ImageDir == "" {
		c.ImageDir = DefaultImageDir
	}
	if c.RunDir == "" {
		c.RunDir = DefaultRunDir
	}
	if c.Accel == "" {
		c.Accel = string(vmm.AccelAuto)
	}
	if err := launcher.CheckVMM(c.VMM); err != nil {
		return Config{}, fmt.Errorf("vmm: %w", err)
	}
	switch vmm.Accel(c.Accel) {
	case vmm.AccelAuto, vmm.AccelKVM, vmm.AccelTCG:
	default:
		return Config{}, fmt.Errorf("accel %q: want auto, kvm or tcg", c.Accel)
	}
	if c.CPUs < 0 || c.MemoryMiB < 0 || c.MaxCPUs < 0 || c.MaxMemoryMiB < 0 || c.BootTimeoutSeconds < 0 {
		return Config{}, fmt.Errorf("cpus, memory_mib, max_cpus, max_memory_mib and boot_timeout_seconds must not be negative")
	}
	c.MaxCPUs = cmp.Or(c.MaxCPUs, max(DefaultMaxCPUs, c.CPUs))
	c.MaxMemoryMiB = cmp.Or(c.MaxMemoryMiB, max(DefaultMaxMemoryMiB, c.MemoryMiB))
	switch {
	case c.MaxCPUs < cmp.Or(c.CPUs, vmm.DefaultCPUs) || c.MaxCPUs > vmm.MaxCPUs:
		return Config{}, fmt.Errorf("max_cpus %d: want cpus (%d) to %d", c.MaxCPUs, cmp.Or(c.CPUs, vmm.DefaultCPUs), vmm.MaxCPUs)
	case c.MaxMemoryMiB < cmp.Or(c.MemoryMiB, vmm.DefaultMemoryMiB):
		return Config{}, fmt.Errorf("max_memory_mib %d: want at least memory_mib (%d)", c.MaxMemoryMiB, cmp.Or(c.MemoryMiB, vmm.DefaultMemoryMiB))
	}
	return c, nil
}

// launcherOptions are the launcher options of one pod VM named name.
func (c Config) launcherOptions(name, hostData string) launcher.Options {
	o := launcher.Options{
		ImageDir:    c.ImageDir,
		VMM:         c.VMM,
		Accel:       vmm.Accel(c.Accel),
		CPUs:        c.CPUs,
		MemoryMiB:   c.MemoryMiB,
		RunBase:     c.RunDir,
		Name:        name,
		BootTimeout: time.Duration(c.BootTimeoutSeconds) * time.Second,
		SEVSNP:      c.SEVSNP,
		HostData:    hostData,
		CacheDir:    c.CacheDir,
	}
	o.DiskCacheBytes = c.DiskCacheBytes
	if c.QEMU != "" {
		o.QEMU = append(o.QEMU, vmm.WithQEMU(c.QEMU))
	}
	if c.VhostDeviceVsock != "" {
		o.QEMU = append(o.QEMU, vmm.WithVhostDeviceVsock(c.VhostDeviceVsock))
	}
	if c.CloudHypervisor != "" {
		o.CH = append(o.CH, vmm.WithCloudHypervisor(c.CloudHypervisor))
	}
	return o
}
