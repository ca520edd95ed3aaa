package vmm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
)

// The request and response bodies of Cloud Hypervisor's REST API (v53.0 OpenAPI spec,
// vmm/src/api/openapi/cloud-hypervisor.yaml); field names are exactly the spec's.

// VmConfig is the body of vm.create.
type VmConfig struct {
	Payload  PayloadConfig   `json:"payload"`
	Cpus     *CpusConfig     `json:"cpus,omitempty"`
	Memory   *MemoryConfig   `json:"memory,omitempty"`
	Disks    []DiskConfig    `json:"disks,omitempty"`
	Rng      *RngConfig      `json:"rng,omitempty"`
	Serial   *ConsoleConfig  `json:"serial,omitempty"`
	Console  *ConsoleConfig  `json:"console,omitempty"`
	Vsock    *VsockConfig    `json:"vsock,omitempty"`
	Platform *PlatformConfig `json:"platform,omitempty"`
}

// PayloadConfig says what the VM boots.
type PayloadConfig struct {
	Kernel    string `json:"kernel,omitempty"`
	Initramfs string `json:"initramfs,omitempty"`
	Cmdline   string `json:"cmdline,omitempty"`
	IGVM      string `json:"igvm,omitempty"`
	HostData  string `json:"host_data,omitempty"`
}

// CpusConfig is the vCPU count.
type CpusConfig struct {
	BootVcpus int `json:"boot_vcpus"`
	MaxVcpus  int `json:"max_vcpus"`
}

// MemoryConfig is the guest memory in bytes.
type MemoryConfig struct {
	Size int64 `json:"size"`
}

// DiskConfig is one virtio-blk disk.
type DiskConfig struct {
	Path     string `json:"path"`
	Readonly bool   `json:"readonly,omitempty"`
	Serial   string `json:"serial,omitempty"`
}

// RngConfig is the virtio-rng source.
type RngConfig struct {
	Src string `json:"src"`
}

// ConsoleConfig is a serial port or virtio console; Mode is Off, Pty, Tty, File, Socket
// or Null.
type ConsoleConfig struct {
	Mode string `json:"mode"`
	File string `json:"file,omitempty"`
}

// VsockConfig is the guest's vsock device and its hybrid vsock socket on the host.
type VsockConfig struct {
	Cid    int64  `json:"cid"`
	Socket string `json:"socket"`
}

// PlatformConfig carries the confidential-computing switch.
type PlatformConfig struct {
	SevSnp bool `json:"sev_snp,omitempty"`
}

// VmInfo is the answer to vm.info.
type VmInfo struct {
	Config VmConfig `json:"config"`
	State  string   `json:"state"`
}

// VmmPingResponse is the answer to vmm.ping.
type VmmPingResponse struct {
	Version      string `json:"version"`
	BuildVersion string `json:"build_version,omitempty"`
	PID          int64  `json:"pid,omitempty"`
}

// vmConfig translates cfg to Cloud Hypervisor's VmConfig.
func vmConfig(cfg Config, vsockPath, consolePath string) VmConfig {
	vc := VmConfig{
		Cpus:    &CpusConfig{BootVcpus: cfg.CPUs, MaxVcpus: cfg.CPUs},
		Memory:  &MemoryConfig{Size: int64(cfg.MemoryMiB) << 20},
		Serial:  &ConsoleConfig{Mode: "File", File: consolePath},
		Console: &ConsoleConfig{Mode: "Off"},
		Rng:     &RngConfig{Src: "/dev/urandom"},
		Vsock:   &VsockConfig{Cid: int64(cfg.GuestCID), Socket: vsockPath},
	}
	if cfg.IGVM != "" {
		vc.Payload = PayloadConfig{IGVM: cfg.IGVM, HostData: cfg.HostData}
	} else {
		vc.Payload = PayloadConfig{Kernel: cfg.Kernel, Initramfs: cfg.Initramfs, Cmdline: cfg.Cmdline}
	}
	if cfg.SEVSNP {
		vc.Platform = &PlatformConfig{SevSnp: true}
	}
	for _, d := range cfg.Disks {
		vc.Disks = append(vc.Disks, DiskConfig{Path: d.Path, Readonly: d.ReadOnly, Serial: d.Serial})
	}
	return vc
}

// CHClient talks to one Cloud Hypervisor API socket.
type CHClient struct {
	socket string
	http   *http.Client
}

// NewCHClient returns a client for the API socket at path.
func NewCHClient(path string) *CHClient {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableKeepAlives: true,
	}
	return &CHClient{socket: path, http: &http.Client{Transport: tr}}
}

// Ping is vmm.ping.
func (c *CHClient) Ping(ctx context.Context) (VmmPingResponse, error) {
	var r VmmPingResponse
	err := c.do(ctx, http.MethodGet, "vmm.ping", nil, &r)
	return r, err
}

// Create is vm.create.
func (c *CHClient) Create(ctx context.Context, vc VmConfig) error {
	return c.do(ctx, http.MethodPut, "vm.create", vc, nil)
}

// Boot is vm.boot.
func (c *CHClient) Boot(ctx context.Context) error {
	return c.do(ctx, http.MethodPut, "vm.boot", nil, nil)
}

// Info is vm.info.
func (c *CHClient) Info(ctx context.Context) (VmInfo, error) {
	var r VmInfo
	err := c.do(ctx, http.MethodGet, "vm.info", nil, &r)
	return r, err
}

// Shutdown is vm.shutdown.
func (c *CHClient) Shutdown(ctx context.Context) error {
	return c.do(ctx, http.MethodPut, "vm.shutdown", nil, nil)
}

// PowerButton is vm.power-button (an ACPI power button press).
func (c *CHClient) PowerButton(ctx context.Context) error {
	return c.do(ctx, http.MethodPut, "vm.power-button", nil, nil)
}

// ShutdownVMM is vmm.shutdown: the cloud-hypervisor process exits.
func (c *CHClient) ShutdownVMM(ctx context.Context) error {
	return c.do(ctx, http.MethodPut, "vmm.shutdown", nil, nil)
}

func (c *CHClient) do(ctx context.Context, method, endpoint string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode %s request: %w", endpoint, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://localhost/api/v1/"+endpoint, body)
	if err != nil {
		return fmt.Errorf("cloud-hypervisor %s: %w", endpoint, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return c.dialErr(endpoint, err)
	}
	defer resp.Body.Close()
	data, err := readAnswer(endpoint, resp)
	if err != nil {
		return err
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("cloud-hypervisor %s: decode answer: %w", endpoint, err)
		}
	}
	return nil
}

// dialErr is the error of a request that reached no VMM.
func (c *CHClient) dialErr(endpoint string, err error) error {
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("cloud-hypervisor %s: no VMM listens on %s: %w", endpoint, c.socket, ErrNotRunning)
	}
	return fmt.Errorf("cloud-hypervisor %s: %w", endpoint, err)
}

// readAnswer returns the body of a 2xx answer, or an ErrAPI error quoting the VMM's.
func readAnswer(endpoint string, resp *http.Response) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("cloud-hypervisor %s: read answer: %w", endpoint, err)
	}
	if resp.StatusCode/100 != 2 {
		msg := strings.TrimSpace(string(data))
		if msg == "" {
			msg = "(no details)"
		}
		return nil, fmt.Errorf("cloud-hypervisor %s: %s: %s: %w", endpoint, resp.Status, msg, ErrAPI)
	}
	return data, nil
}
