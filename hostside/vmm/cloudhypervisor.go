package vmm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

const (
	chBinary  = "cloud-hypervisor"
	chInstall = "install Cloud Hypervisor (v53 or later) and put cloud-hypervisor on PATH, or use --vmm qemu"
	// APISocket is Cloud Hypervisor's REST API socket inside Config.RunDir.
	APISocket = "ch-api.sock"
	chLog     = "cloud-hypervisor.log"
)

type chOptions struct {
	binary   string
	detach   bool
	snpParam string
}

// CHOption configures StartCloudHypervisor.
type CHOption func(*chOptions)

// WithCloudHypervisor sets the cloud-hypervisor binary (default: from PATH).
func WithCloudHypervisor(path string) CHOption { return func(o *chOptions) { o.binary = path } }

// WithCHSNPProbe sets the kvm_amd parameter StartCloudHypervisor reads to see whether the
// host runs SEV-SNP guests (default SNPParam).
func WithCHSNPProbe(param string) CHOption { return func(o *chOptions) { o.snpParam = param } }

// WithCHDetach makes the VM outlive the calling process.
func WithCHDetach() CHOption { return func(o *chOptions) { o.detach = true } }

// StartCloudHypervisor starts cloud-hypervisor with an API socket, then creates and boots
// the VM through the API. On failure the VMM is stopped again.
func StartCloudHypervisor(ctx context.Context, cfg Config, opts ...CHOption) (VM, error) {
	var o chOptions
	for _, opt := range opts {
		opt(&o)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.SEVSNP {
		// Before anything starts: the host must run SNP guests, and Cloud Hypervisor
		// starts them only from an IGVM file, with the host data for HOST_DATA.
		if err := ProbeSNP(o.snpParam); err != nil {
			return nil, err
		}
		if cfg.IGVM == "" {
			return nil, fmt.Errorf("SEV-SNP launch under Cloud Hypervisor: no IGVM file given (guest.igvm from make image)")
		}
		if err := checkSNPConfig(cfg); err != nil {
			return nil, err
		}
	}
	bin, err := lookPath(chBinary, o.binary, chInstall)
	if err != nil {
		return nil, err
	}
	api := filepath.Join(cfg.RunDir, APISocket)
	for _, name := range []string{APISocket, VsockSocket, ConsoleLog} {
		os.Remove(filepath.Join(cfg.RunDir, name))
	}
	vm := &procVM{runDir: cfg.RunDir, done: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			vm.kill()
			os.Remove(api)
		}
	}()
	p, err := startProc(bin, []string{"--api-socket", "path=" + api}, filepath.Join(cfg.RunDir, chLog), o.detach, "", nil)
	if err != nil {
		return nil, fmt.Errorf("start cloud-hypervisor: %w", err)
	}
	vm.procs, vm.main = []*proc{p}, p
	if err := waitForFile(ctx, api, p, socketWait); err != nil {
		return nil, fmt.Errorf("cloud-hypervisor: %w%s", err, logTail(p.log))
	}
	c := NewCHClient(api)
	if err := waitForPing(ctx, c, p, 5*time.Second); err != nil {
		return nil, fmt.Errorf("%w%s", err, logTail(p.log))
	}
	if err := c.Create(ctx, vmConfig(cfg, vm.VsockPath(), vm.ConsolePath())); err != nil {
		return nil, fmt.Errorf("%w%s", err, logTail(p.log))
	}
	// Cloud Hypervisor takes a tap's descriptor only with vm.add-net (vm.create ignores
	// descriptors); added before boot, the device is part of the VM's configuration.
	for i, n := range cfg.NICs {
		if err := c.AddNet(ctx, netConfig(i, n), n.Tap); err != nil {
			return nil, fmt.Errorf("%w%s", err, logTail(p.log))
		}
	}
	if err := c.Boot(ctx); err != nil {
		return nil, fmt.Errorf("%w%s", err, logTail(p.log))
	}
	vm.powerOff = func(ctx context.Context) error { return chPowerOff(ctx, c, vm.done) }
	go func() {
		vm.supervise()
		os.Remove(api)
	}()
	ok = true
	return vm, nil
}

// chPowerOff presses the ACPI power button, gives the guest a moment, then shuts the VM and
// the VMM down through the API.
func chPowerOff(ctx context.Context, c *CHClient, done <-chan struct{}) error {
	if err := c.PowerButton(ctx); err != nil && errors.Is(err, ErrNotRunning) {
		return err
	}
	grace, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for {
		info, err := c.Info(grace)
		if err != nil || info.State == "Shutdown" {
			break
		}
		select {
		case <-done:
			return nil
		case <-grace.Done():
		case <-time.After(100 * time.Millisecond):
			continue
		}
		break
	}
	if err := c.Shutdown(ctx); err != nil && !errors.Is(err, ErrAPI) {
		return err
	}
	return c.ShutdownVMM(ctx)
}

// CheckCloudHypervisor reports early whether StartCloudHypervisor can find its binary.
func CheckCloudHypervisor(opts ...CHOption) error {
	var o chOptions
	for _, opt := range opts {
		opt(&o)
	}
	_, err := lookPath(chBinary, o.binary, chInstall)
	return err
}

// waitForPing pings the API until the VMM answers: its socket file exists from bind(2)
// on, a moment before the VMM listens on it.
func waitForPing(ctx context.Context, c *CHClient, p *proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := c.Ping(ctx)
		if err == nil || !errors.Is(err, ErrNotRunning) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-p.exited:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
