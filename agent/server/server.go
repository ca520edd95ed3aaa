// Package server runs the confguest agent: the ttrpc API server with its
// single authorization point, on a vsock or unix listener, under one
// errgroup with the agent's other long-running tasks.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	agentv1 "confguest/agent/api/v1/wire"
	"confguest/agent/attest"
	"confguest/agent/authz"
	"confguest/agent/container"
	"confguest/agent/policy"
	"confguest/agent/ttrpcserver"
)

const (
	// DefaultAddress is where the guest agent listens: vsock port 1024,
	// the Kata Containers convention.
	DefaultAddress = "vsock:1024"
	// DefaultStateDir holds container state; /run is a tmpfs in the guest.
	DefaultStateDir = "/run/confguest"
	// DefaultImageDir holds container images built into the verity root.
	DefaultImageDir = "/usr/lib/confguest/images"
)

// Config configures Run.
type Config struct {
	Address  string       // vsock:PORT or unix:PATH
	StateDir string       // container state directory
	Logger   *slog.Logger // nil means slog.Default()
	Ready    func()       // called once the listener is open

	// Authorizer decides on every request; nil means authz.AllowAll
	// (or the policy gate, with RequirePolicy).
	Authorizer authz.Authorizer
	// RequirePolicy puts the measured-policy gate (agent/policy) in front
	// of every call: the first call must be SetPolicy. With
	// confguest.tee=snp the policy must be bound to HOST_DATA and the
	// SEV-SNP device must exist; with tee=none it is accepted unbound.
	RequirePolicy bool
	// QuoteProvider replaces the guest's SEV-SNP device (tests: the
	// go-sev-guest fakes). Nil: the device when confguest.tee=snp.
	QuoteProvider attest.QuoteProvider
	// EvidenceSocket is where the workload evidence endpoint listens: ""
	// means StateDir/shared/attestation.sock (attest.SocketPath in the
	// guest), "-" means no endpoint. Containers whose policy entry allows
	// attestation get it at attest.ContainerSocketPath.
	EvidenceSocket string
	// Containers configures the container manager; StateDir and Logger
	// are filled in from above when empty. Verity nil means the kernel's
	// device-mapper.
	Containers container.Config
	// Cmdline is the kernel command line ("" reads /proc/cmdline), read
	// with PID 1's parser (init/cmdline).
	Cmdline string
	// SNPDevice reports the guest's SEV-SNP device; with one the agent
	// refuses confguest.tee=none. Nil probes /dev/sev-guest and
	// configfs-tsm (tests inject their own).
	SNPDevice SNPDeviceProbe
	// Executable is the file whose SHA-256 Version reports ("" = /proc/self/exe): the
	// record the image builder put beside it (DigestSuffix), else computed.
	Executable string
	// RequestPowerOff, if set, is called by the Shutdown call once every
	// container is deleted, to ask PID 1 to power the VM off (PID 1 then
	// stops the agent with SIGTERM). Nil: the agent just stops serving.
	RequestPowerOff func() error
}

// Run serves the agent API until ctx is cancelled or a Shutdown call, then
// deletes every container and returns.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	cmdline := cfg.Cmdline
	if cmdline == "" {
		b, err := os.ReadFile("/proc/cmdline")
		if err != nil {
			return fmt.Errorf("read kernel command line: %w", err)
		}
		cmdline = string(b)
	}
	probe := cfg.SNPDevice
	if probe == nil {
		probe = probeSNPDevice
	}
	tee, err := guestTEE(cmdline, probe)
	if err != nil {
		return err
	}
	var gate *policy.Gate
	cc := cfg.Containers
	cc.ExecDropped = func(containerID, execID string) {
		if gate != nil {
			gate.ForgetExec(containerID, execID)
		}
	}
	if cc.StateDir == "" {
		cc.StateDir = cfg.StateDir
	}
	if cc.Logger == nil {
		cc.Logger = log
	}
	if cc.Verity == nil {
		cc.Verity = container.DeviceMapper{}
	}
	m, err := container.NewManager(cc)
	if err != nil {
		return err
	}
	attester, err := openAttester(cfg, tee, log)
	if err != nil {
		return err
	}
	if cfg.RequirePolicy {
		var src policy.HostDataSource
		if tee == TEESNP {
			src = attester
		}
		gate = policy.NewGate(src, log)
	}
	a := cfg.Authorizer
	switch {
	case a != nil:
	case gate != nil:
		a = gate
	default:
		a = authz.AllowAll{Logger: log}
	}
	exe := cfg.Executable
	if exe == "" {
		exe = "/proc/self/exe"
	}
	shutdown := make(chan struct{})
	var once sync.Once
	svc := &service{
		m:        m,
		tee:      tee,
		digest:   sync.OnceValues(func() (string, error) { return executableDigest(exe) }),
		shutdown: func() { once.Do(func() { close(shutdown) }) },
		powerOff: cfg.RequestPowerOff,
		gate:     gate,
		attester: attester,
		evidence: evidenceSocket(cfg),
	}

	// The evidence endpoint's socket exists before the API serves: a container created by
	// the first request may mount it.
	var evidence net.Listener
	if sock := svc.evidence; sock != "" {
		if evidence, err = attest.Listen(sock); err != nil {
			log.Error("workload evidence endpoint", "err", err)
			evidence = nil
		}
	}
	l, err := Listen(cfg.Address)
	if err != nil {
		if evidence != nil {
			evidence.Close()
		}
		return err
	}
	srv := ttrpcserver.NewServer(edgeInterceptor(a))
	agentv1.RegisterAgentService(srv, edgeService{AgentService: svc, a: a})

	// Ready once the sockets listen and the server is set up: a host that connects now
	// waits in the listen backlog until the accept loop, started right below, takes the
	// connection. The goroutines below and the log line are no work before that.
	if cfg.Ready != nil {
		cfg.Ready()
	}

	g, gctx := errgroup.WithContext(ctx)
	// The evidence endpoint stops with the API server.
	ectx, stopEvidence := context.WithCancel(gctx)
	defer stopEvidence()
	// The reaper runs until the containers are deleted at shutdown (a delete may need it).
	rctx, stopReaper := context.WithCancel(gctx)
	defer stopReaper()
	g.Go(func() error { return m.ReapOrphans(rctx) })
	g.Go(func() error {
		err := srv.Serve(gctx, l)
		if errors.Is(err, ttrpcserver.ErrServerClosed) {
			return nil
		}
		return err
	})
	g.Go(func() error {
		select {
		case <-gctx.Done():
		case <-shutdown:
			log.Info("shutdown requested")
		}
		stopEvidence()
		// The server counts a connection busy until its last response is
		// written, so a Shutdown call's response reaches the host.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		err := srv.Shutdown(sctx)
		if cerr := m.Close(sctx); cerr != nil {
			log.Error("delete containers at exit", "err", cerr)
		}
		stopReaper()
		if errors.Is(err, context.DeadlineExceeded) {
			srv.Close()
			return nil
		}
		return err
	})
	if evidence != nil {
		g.Go(func() error {
			if err := attest.Serve(ectx, evidence, attester, svc.policyInForce); err != nil {
				log.Error("workload evidence endpoint", "err", err)
			}
			return nil
		})
	}
	log.Info("agent listening", "address", cfg.Address, "tee", tee, "policy_required", gate != nil)
	return g.Wait()
}
