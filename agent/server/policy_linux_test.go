package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/google/go-sev-guest/abi"
	sevtest "github.com/google/go-sev-guest/testing"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"

	"confguest/agent/api/evidence"
	apipolicy "confguest/agent/api/policy"
	agentv1 "confguest/agent/api/v1"
	"confguest/agent/attest"
	"confguest/agent/policy"
)

// startPolicyAgent runs the agent with RequirePolicy on a unix socket,
// with cmdline's TEE and qp as its SEV-SNP device (nil: none).
func startPolicyAgent(t *testing.T, cmdline string, qp attest.QuoteProvider) *testAgent {
	t.Helper()
	return startPolicyAgentWith(t, Config{Cmdline: cmdline, QuoteProvider: qp})
}

// startPolicyAgentWith runs the agent with RequirePolicy and cfg on a
// unix socket, with the busybox image as its image directory and no
// SEV-SNP device unless cfg names one.
func startPolicyAgentWith(t testing.TB, cfg Config) *testAgent {
	t.Helper()
	dir := t.TempDir()
	ta := &testAgent{image: busyboxImage(t, dir), stateDir: filepath.Join(dir, "state"), logs: &syncBuffer{}}
	sock := filepath.Join(dir, "agent.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	cfg.Address, cfg.StateDir, cfg.RequirePolicy = "unix:"+sock, ta.stateDir, true
	cfg.Logger, cfg.Ready = slog.New(slog.NewTextHandler(ta.logs, nil)), func() { close(ready) }
	cfg.Containers.ImageDirs = append(cfg.Containers.ImageDirs, ta.image)
	if cfg.SNPDevice == nil {
		cfg.SNPDevice = noSNPDevice
	}
	go func() { done <- Run(ctx, withLibct(cfg)) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("agent exited before ready: %v", err)
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ta.raw = ttrpc.NewClient(conn)
	ta.client = agentv1.NewAgentClient(ta.raw)
	t.Cleanup(func() {
		ta.raw.Close()
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("agent did not stop")
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", ta.logs.String())
		}
	})
	return ta
}

// noSNPDevice is the SEV-SNP device probe of a machine without one.
func noSNPDevice() (string, bool) { return "", false }

// withCgroupNS returns spec JSON (as the spec helper builds it) with a
// cgroup namespace: the policy requires every namespace but the network
// one to be the container's own, and runc's example adds it only on
// cgroup2-only hosts (the guest is one; this host may not be).
func withCgroupNS(t testing.TB, b []byte) []byte {
	t.Helper()
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.CgroupNamespace }) {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	out, err := json.Marshal(&s)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// entryFor is a policy entry admitting spec s (as the test helpers build
// it) on the busybox image, with args given by matchers.
func entryFor(name, image string, s *specs.Spec, args []policy.Match) policy.Container {
	c := policy.Container{
		Name: name, Rootfs: policy.Rootfs{GuestDirectory: image}, Args: args,
		Env: policy.Exactly(append(s.Process.Env, "PATH=/bin", "TERM=xterm")...), Cwd: s.Process.Cwd,
		Capabilities: policy.Capabilities{Bounding: s.Process.Capabilities.Bounding, Effective: s.Process.Capabilities.Effective,
			Permitted: s.Process.Capabilities.Permitted, Inheritable: s.Process.Capabilities.Inheritable, Ambient: s.Process.Capabilities.Ambient},
		NoNewPrivileges: s.Process.NoNewPrivileges,
		Hostname:        policy.Match{Exact: s.Hostname},
	}
	for _, r := range s.Process.Rlimits {
		c.Rlimits = append(c.Rlimits, apipolicy.Rlimit{Type: r.Type, Hard: r.Hard, Soft: r.Soft})
	}
	for _, m := range s.Mounts {
		c.Mounts = append(c.Mounts, policy.Mount{Destination: m.Destination, Type: m.Type, Source: m.Source, Options: m.Options})
	}
	return c
}

func policyDoc(t testing.TB, p policy.Policy) []byte {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := policy.Parse(b); err != nil {
		t.Fatalf("test policy: %v", err)
	}
	return b
}

// TestPolicyEveryRPC drives an agent under a measured policy through a
// scenario with an allowed and a denied call of every method of the
// service (taken from the descriptor): allowed calls get anything but
// PermissionDenied (most succeed), denied ones PermissionDenied naming
// the rule.
func TestPolicyEveryRPC(t *testing.T) {
	ta := startPolicyAgent(t, "console=ttyS0 confguest.tee=none", nil)
	ex := specconv.Example()
	ex.Hostname = "confguest-test" // as the spec helper sends it
	web := entryFor("web", ta.image, ex, []policy.Match{{Exact: "sleep"}, {Pattern: "[0-9]+"}})
	web.Stdout = true
	web.Volumes = []apipolicy.Volume{{Destination: "/etc/config", Kind: apipolicy.VolumeFiles}, {Destination: "/dev/termination-log", Kind: apipolicy.VolumeFiles, ReadBack: true}}
	web.UpdateResources = []string{"memory"}
	web.Exec = []policy.Exec{
		{Args: policy.Exactly("cat"), Stdin: true},
		{Args: policy.Exactly("sh"), Stdin: true, TTY: true},
	}
	doc := policyDoc(t, policy.Policy{Version: policy.Version, Agent: policy.AgentRules{Stats: true},
		Containers: []policy.Container{web}})
	webSpec := withCgroupNS(t, spec(t, false, "sleep", "30"))
	readOut := func(cid, eid string, stream agentv1.OutputStream) func() error {
		return func() error {
			var b bytes.Buffer
			_, err := agentv1.CopyOutput(ctx(t), ta.client, &agentv1.ProcessRef{ContainerId: cid, ExecId: eid}, stream, &b)
			if err == nil && b.String() != "via stdin" {
				t.Errorf("output of %s/%s = %q, want %q", cid, eid, b.String(), "via stdin")
			}
			return err
		}
	}
	ref := func(cid, eid string) *agentv1.ProcessRef { return &agentv1.ProcessRef{ContainerId: cid, ExecId: eid} }
	c := ta.client
	type step struct {
		name   string
		method string
		call   func() error
		allow  bool
		rule   string // a denial must name it
	}
	steps := []step{
		{"version before a policy", "Version", func() error { _, err := c.Version(ctx(t), &agentv1.VersionRequest{}); return err }, true, ""},
		{"report before a policy", "GetReport", func() error {
			_, err := c.GetReport(ctx(t), &agentv1.GetReportRequest{ReportData: []byte("nonce")})
			if code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "no SEV-SNP device") {
				t.Errorf("GetReport with confguest.tee=none = %v, want FailedPrecondition: no SEV-SNP device", err)
			}
			return err
		}, true, ""},
		{"delete before a policy", "DeleteContainer", func() error {
			_, err := c.DeleteContainer(ctx(t), &agentv1.DeleteContainerRequest{ContainerId: "w"})
			return err
		}, false, "no policy installed"},
		{"create before a policy", "CreateContainer", func() error {
			_, err := c.CreateContainer(ctx(t), &agentv1.CreateContainerRequest{ContainerId: "w", SpecJson: webSpec,
				Rootfs: &agentv1.Rootfs{Source: &agentv1.Rootfs_GuestDirectory{GuestDirectory: ta.image}}})
			return err
		}, false, "no policy installed: call SetPolicy first"},
		{"list before a policy", "ListContainers", func() error { _, err := c.ListContainers(ctx(t), &agentv1.ListContainersRequest{}); return err }, false, "no policy installed"},
		{"set an invalid policy", "SetPolicy", func() error {
			_, err := c.SetPolicy(ctx(t), &agentv1.SetPolicyRequest{Policy: []byte(`{"version":1,"allow_all":true}`)})
			if code(err) != codes.InvalidArgument {
				t.Errorf("SetPolicy(unknown field) = %v, want InvalidArgument", err)
			}
			return err
		}, true, ""},
		{"set the policy", "SetPolicy", func() error {
			r, err := c.SetPolicy(ctx(t), &agentv1.SetPolicyRequest{Policy: doc})
			if err == nil && (r.GetSha256() != policy.HashHex(doc) || r.GetBound()) {
				t.Errorf("SetPolicy = %v, want sha256 %s, unbound (tee=none)", r, policy.HashHex(doc))
			}
			return err
		}, true, ""},
		{"replace the policy", "SetPolicy", func() error { _, err := c.SetPolicy(ctx(t), &agentv1.SetPolicyRequest{Policy: doc}); return err }, false, "agent.replace_policy"},
		{"report without agent.get_report", "GetReport", func() error {
			_, err := c.GetReport(ctx(t), &agentv1.GetReportRequest{ReportData: []byte("nonce")})
			return err
		}, false, "agent.get_report"},
		{"create web", "CreateContainer", func() error {
			_, err := c.CreateContainer(ctx(t), &agentv1.CreateContainerRequest{ContainerId: "w", SpecJson: webSpec,
				Rootfs: &agentv1.Rootfs{Source: &agentv1.Rootfs_GuestDirectory{GuestDirectory: ta.image}}})
			return err
		}, true, ""},
		{"create with other args", "CreateContainer", func() error {
			_, err := c.CreateContainer(ctx(t), &agentv1.CreateContainerRequest{ContainerId: "b", SpecJson: withCgroupNS(t, spec(t, false, "sh", "-c", "id")),
				Rootfs: &agentv1.Rootfs{Source: &agentv1.Rootfs_GuestDirectory{GuestDirectory: ta.image}}})
			return err
		}, false, "containers[web].args"},
		{"start web", "StartContainer", func() error {
			_, err := c.StartContainer(ctx(t), &agentv1.StartContainerRequest{ContainerId: "w"})
			return err
		}, true, ""},
		{"start unadmitted", "StartContainer", func() error {
			_, err := c.StartContainer(ctx(t), &agentv1.StartContainerRequest{ContainerId: "b"})
			return err
		}, false, `container "b" was not admitted`},
		{"exec cat", "ExecProcess", func() error {
			_, err := c.ExecProcess(ctx(t), &agentv1.ExecProcessRequest{ContainerId: "w", ExecId: "cat", ProcessJson: process(t, false, "cat"), Stdio: &agentv1.StdioOptions{Stdin: true}})
			return err
		}, true, ""},
		{"exec sh with a terminal", "ExecProcess", func() error {
			_, err := c.ExecProcess(ctx(t), &agentv1.ExecProcessRequest{ContainerId: "w", ExecId: "sh", ProcessJson: process(t, true, "sh"), Stdio: &agentv1.StdioOptions{Stdin: true}})
			return err
		}, true, ""},
		{"exec ls", "ExecProcess", func() error {
			_, err := c.ExecProcess(ctx(t), &agentv1.ExecProcessRequest{ContainerId: "w", ExecId: "ls", ProcessJson: process(t, false, "ls", "/")})
			return err
		}, false, "containers[web].exec"},
		{"resize the exec's terminal", "ResizeTTY", func() error {
			_, err := c.ResizeTTY(ctx(t), &agentv1.ResizeTTYRequest{Process: ref("w", "sh"), Width: 100, Height: 40})
			return err
		}, true, ""},
		{"resize web's terminal", "ResizeTTY", func() error {
			_, err := c.ResizeTTY(ctx(t), &agentv1.ResizeTTYRequest{Process: ref("w", ""), Width: 100, Height: 40})
			return err
		}, false, "containers[web].tty"},
		{"write cat's stdin", "WriteStdin", func() error {
			_, err := c.WriteStdin(ctx(t), &agentv1.WriteStdinRequest{Process: ref("w", "cat"), Data: []byte("via stdin")})
			return err
		}, true, ""},
		{"write web's stdin", "WriteStdin", func() error {
			_, err := c.WriteStdin(ctx(t), &agentv1.WriteStdinRequest{Process: ref("w", ""), Data: []byte("x")})
			return err
		}, false, "containers[web].stdin"},
		{"close cat's stdin", "CloseStdin", func() error {
			_, err := c.CloseStdin(ctx(t), &agentv1.CloseStdinRequest{Process: ref("w", "cat")})
			return err
		}, true, ""},
		{"close web's stdin", "CloseStdin", func() error {
			_, err := c.CloseStdin(ctx(t), &agentv1.CloseStdinRequest{Process: ref("w", "")})
			return err
		}, false, "containers[web].stdin"},
		{"read cat's stdout", "ReadOutput", readOut("w", "cat", agentv1.OutputStream_OUTPUT_STREAM_STDOUT), true, ""},
		{"read cat's stderr", "ReadOutput", readOut("w", "cat", agentv1.OutputStream_OUTPUT_STREAM_STDERR), false, "containers[web].stderr"},
		{"wait for cat", "WaitProcess", func() error {
			r, err := c.WaitProcess(ctx(t), &agentv1.WaitProcessRequest{Process: ref("w", "cat")})
			if err == nil && r.GetExitCode() != 0 {
				t.Errorf("cat exited %d, want 0", r.GetExitCode())
			}
			return err
		}, true, ""},
		{"wait for an unadmitted exec", "WaitProcess", func() error {
			_, err := c.WaitProcess(ctx(t), &agentv1.WaitProcessRequest{Process: ref("w", "ls")})
			return err
		}, false, `process "ls" was not admitted`},
		{"state of web", "State", func() error { _, err := c.State(ctx(t), &agentv1.StateRequest{ContainerId: "w"}); return err }, true, ""},
		{"state of unadmitted", "State", func() error { _, err := c.State(ctx(t), &agentv1.StateRequest{ContainerId: "b"}); return err }, false, "was not admitted"},
		{"list", "ListContainers", func() error { _, err := c.ListContainers(ctx(t), &agentv1.ListContainersRequest{}); return err }, true, ""},
		{"stats of web", "Stats", func() error { _, err := c.Stats(ctx(t), &agentv1.StatsRequest{ContainerId: "w"}); return err }, true, ""},
		{"stats of unadmitted", "Stats", func() error { _, err := c.Stats(ctx(t), &agentv1.StatsRequest{ContainerId: "b"}); return err }, false, "was not admitted"},
		{"stats of the agent", "Stats", func() error {
			r, err := c.Stats(ctx(t), &agentv1.StatsRequest{})
			if err == nil && r.GetAgent().GetRssBytes() == 0 {
				t.Errorf("Stats of the agent = %v, want its resident memory", r)
			}
			return err
		}, true, ""},
		{"stats of a hostile id", "Stats", func() error { _, err := c.Stats(ctx(t), &agentv1.StatsRequest{ContainerId: "../w"}); return err }, false, "was not admitted"},
		{"update a listed volume", "UpdateVolume", func() error {
			// Allowed; web was created without it, so the agent has no such volume.
			_, err := c.UpdateVolume(ctx(t), &agentv1.UpdateVolumeRequest{ContainerId: "w", Destination: "/etc/config", Files: &agentv1.Files{}})
			if code(err) != codes.NotFound {
				t.Errorf("UpdateVolume(a volume web does not have) = %v, want NotFound", err)
			}
			return err
		}, true, ""},
		{"update an unlisted volume", "UpdateVolume", func() error {
			_, err := c.UpdateVolume(ctx(t), &agentv1.UpdateVolumeRequest{ContainerId: "w", Destination: "/etc", Files: &agentv1.Files{}})
			return err
		}, false, `mount destination "/etc" may not take host-provided files`},
		{"read back a listed file", "ReadVolume", func() error {
			_, err := c.ReadVolume(ctx(t), &agentv1.ReadVolumeRequest{ContainerId: "w", Destination: "/dev/termination-log"})
			if code(err) != codes.NotFound {
				t.Errorf("ReadVolume(a volume web does not have) = %v, want NotFound", err)
			}
			return err
		}, true, ""},
		{"read back a file without read_back", "ReadVolume", func() error {
			_, err := c.ReadVolume(ctx(t), &agentv1.ReadVolumeRequest{ContainerId: "w", Destination: "/etc/config"})
			return err
		}, false, `read back the file at "/etc/config"`},
		{"update web's memory", "UpdateContainer", func() error {
			_, err := c.UpdateContainer(ctx(t), &agentv1.UpdateContainerRequest{ContainerId: "w", Memory: &agentv1.MemoryResources{Limit: 256 << 20}})
			return err
		}, true, ""},
		{"update web's pids", "UpdateContainer", func() error {
			_, err := c.UpdateContainer(ctx(t), &agentv1.UpdateContainerRequest{ContainerId: "w", Pids: &agentv1.PidsResources{Limit: 10}})
			return err
		}, false, "containers[web].update_resources: pids"},
		{"signal web", "SignalProcess", func() error {
			_, err := c.SignalProcess(ctx(t), &agentv1.SignalProcessRequest{Process: ref("w", ""), Signal: 9, All: true})
			return err
		}, true, ""},
		{"signal unadmitted", "SignalProcess", func() error {
			_, err := c.SignalProcess(ctx(t), &agentv1.SignalProcessRequest{Process: ref("b", ""), Signal: 15})
			return err
		}, false, "was not admitted"},
		{"kill unadmitted", "SignalProcess", func() error {
			_, err := c.SignalProcess(ctx(t), &agentv1.SignalProcessRequest{Process: ref("b", ""), Signal: 9})
			if code(err) != codes.NotFound {
				t.Errorf("SIGKILL to unknown container b = %v, want NotFound (allowed: it only removes)", err)
			}
			return err
		}, true, ""},
		{"delete unadmitted", "DeleteContainer", func() error {
			_, err := c.DeleteContainer(ctx(t), &agentv1.DeleteContainerRequest{ContainerId: "b"})
			if code(err) != codes.NotFound {
				t.Errorf("DeleteContainer(unknown b) = %v, want NotFound (allowed: it only removes)", err)
			}
			return err
		}, true, ""},
		{"delete web", "DeleteContainer", func() error {
			_, err := c.DeleteContainer(ctx(t), &agentv1.DeleteContainerRequest{ContainerId: "w"})
			return err
		}, true, ""},
		{"state of deleted web", "State", func() error { _, err := c.State(ctx(t), &agentv1.StateRequest{ContainerId: "w"}); return err }, false, `container "w" was not admitted`},
		{"shutdown", "Shutdown", func() error { _, err := c.Shutdown(ctx(t), &agentv1.ShutdownRequest{}); return err }, false, "agent.shutdown"},
		{"configure the pod network", "ConfigureNetwork", func() error {
			_, err := c.ConfigureNetwork(ctx(t), noSuchNIC)
			return err
		}, false, "agent.pod_network"},
		{"version", "Version", func() error { _, err := c.Version(ctx(t), &agentv1.VersionRequest{}); return err }, true, ""},
	}
	allowed, denied := map[string]bool{}, map[string]bool{}
	for _, s := range steps {
		err := s.call()
		switch {
		case s.allow && code(err) == codes.PermissionDenied:
			t.Errorf("%s: %s = %v, want allowed", s.name, s.method, err)
		case s.allow:
			allowed[s.method] = true
		case code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), s.rule):
			t.Errorf("%s: %s = %v, want PermissionDenied naming %q", s.name, s.method, err, s.rule)
		default:
			denied[s.method] = true
		}
	}
	// Shutdown and the pod network allowed: a policy that says so.
	ta2 := startPolicyAgent(t, "confguest.tee=none", nil)
	doc2 := policyDoc(t, policy.Policy{Version: policy.Version, Agent: policy.AgentRules{Shutdown: true, PodNetwork: true}})
	if _, err := ta2.client.SetPolicy(ctx(t), &agentv1.SetPolicyRequest{Policy: doc2}); err != nil {
		t.Fatalf("SetPolicy(shutdown allowed) = %v", err)
	}
	// Allowed; the MAC is no device of this host, so the agent finds nothing to move.
	if _, err := ta2.client.ConfigureNetwork(ctx(t), noSuchNIC); code(err) != codes.NotFound {
		t.Errorf("ConfigureNetwork(a MAC no device has) under a policy allowing it = %v, want NotFound", err)
	} else {
		allowed["ConfigureNetwork"] = true
	}
	if _, err := ta2.client.Shutdown(ctx(t), &agentv1.ShutdownRequest{}); err != nil {
		t.Errorf("Shutdown under a policy allowing it = %v", err)
	} else {
		allowed["Shutdown"] = true
	}

	// Version and GetReport are refused only after a binding failure: an
	// SEV-SNP guest (fake device) launched for another policy.
	ta3 := startPolicyAgent(t, "confguest.tee=snp", fakeSNP(t, doc2))
	if _, err := ta3.client.SetPolicy(ctx(t), &agentv1.SetPolicyRequest{Policy: doc}); code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "HOST_DATA") {
		t.Errorf("SetPolicy(policy that is not HOST_DATA) = %v, want PermissionDenied naming HOST_DATA", err)
	}
	_, err := ta3.client.Version(ctx(t), &agentv1.VersionRequest{})
	denied["Version"] = code(err) == codes.PermissionDenied
	_, err = ta3.client.GetReport(ctx(t), &agentv1.GetReportRequest{})
	denied["GetReport"] = code(err) == codes.PermissionDenied

	svc := agentv1.File_v1_agent_proto.Services().ByName("Agent")
	for i := 0; i < svc.Methods().Len(); i++ {
		m := string(svc.Methods().Get(i).Name())
		if !allowed[m] || !denied[m] {
			t.Errorf("method %s: scenario has allowed=%v denied=%v calls, want both", m, allowed[m], denied[m])
		}
	}
}

// noSuchNIC is a valid ConfigureNetwork request for a MAC no device of the test's host
// has: an allowed call finds nothing to move and never touches a real interface.
var noSuchNIC = &agentv1.ConfigureNetworkRequest{
	Interface: &agentv1.NetworkInterface{Mac: "02:00:5e:10:00:01", Name: "eth0", Mtu: 1500, Addresses: []string{"10.88.77.5/24"}},
}

// TestDeniedOutputDoesNotStall runs a container writing far more than the
// output buffer holds while the policy hides its stdout: the read is
// refused with no data and the container still runs to completion.
func TestDeniedOutputDoesNotStall(t *testing.T) {
	ta := startPolicyAgent(t, "confguest.tee=none", nil)
	s := withCgroupNS(t, spec(t, false, "sh", "-c", "dd if=/dev/zero bs=64k count=320 2>/dev/null; echo done"))
	var ex specs.Spec
	if err := json.Unmarshal(s, &ex); err != nil {
		t.Fatal(err)
	}
	e := entryFor("quiet", ta.image, &ex, policy.Exactly(ex.Process.Args...))
	doc := policyDoc(t, policy.Policy{Version: policy.Version, Containers: []policy.Container{e}})
	if _, err := ta.client.SetPolicy(ctx(t), &agentv1.SetPolicyRequest{Policy: doc}); err != nil {
		t.Fatal(err)
	}
	ta.create(t, "q", s, nil)
	if _, err := ta.client.StartContainer(ctx(t), &agentv1.StartContainerRequest{ContainerId: "q"}); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	_, err := agentv1.CopyOutput(ctx(t), ta.client, &agentv1.ProcessRef{ContainerId: "q"}, agentv1.OutputStream_OUTPUT_STREAM_STDOUT, &b)
	if code(err) != codes.PermissionDenied || b.Len() != 0 || !strings.Contains(err.Error(), "containers[quiet].stdout") {
		t.Errorf("ReadOutput(stdout) = %d bytes, %v, want none and PermissionDenied naming containers[quiet].stdout", b.Len(), err)
	}
	wctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := ta.client.WaitProcess(wctx, &agentv1.WaitProcessRequest{Process: &agentv1.ProcessRef{ContainerId: "q"}})
	if err != nil || r.GetExitCode() != 0 {
		t.Errorf("WaitProcess = %v, %v, want exit 0: a refused reader must not stall the container", r, err)
	}
}

// snpDevice is an SEV-SNP guest device made of go-sev-guest's testing
// fakes: like the hardware it signs a report for whatever REPORT_DATA the
// agent asks for, with the HOST_DATA the VM was launched with, under the
// library's test AMD chain.
type snpDevice struct {
	signer   *sevtest.AmdSigner
	hostData [32]byte
}

// fakeSNP returns a device for a VM launched with host_data = SHA-256(doc).
func fakeSNP(t *testing.T, doc []byte) *snpDevice {
	t.Helper()
	s, err := sevtest.DefaultTestOnlyCertChain("Milan-B1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &snpDevice{signer: s, hostData: sha256.Sum256(doc)}
}

func (d *snpDevice) GetRawQuote(reportData [64]byte) ([]byte, error) {
	raw := sevtest.CreateRawReport(&sevtest.TestReportOptions{ReportData: reportData[:]})
	binary.LittleEndian.PutUint64(raw[0x08:], abi.SnpPolicyToBytes(abi.SnpPolicy{SMT: true}))
	copy(raw[0xC0:0xE0], d.hostData[:])
	qp, err := sevtest.TcQuoteProvider([]sevtest.TestCase{{Input: reportData, Output: raw}},
		&sevtest.DeviceOptions{Now: time.Now(), Signer: d.signer, Product: abi.DefaultSevProduct()})
	if err != nil {
		return nil, err
	}
	return qp.GetRawQuote(reportData)
}

// TestPolicyBinding checks SetPolicy against HOST_DATA of a report from
// go-sev-guest's fake SEV-SNP device: the matching policy is installed;
// one changed byte is refused and the agent then refuses everything. A
// host report under the installed policy signs the nonce labelled and
// bound to that policy, never the nonce itself.
func TestPolicyBinding(t *testing.T) {
	doc := []byte(`{"version":1,"agent":{"get_report":true}}` + "\n")
	changed := bytes.Replace(doc, []byte("\n"), []byte(" "), 1)
	nonce := []byte("verifier nonce")
	tests := []struct {
		name string
		doc  []byte
		ok   bool
	}{
		{"matching policy", doc, true},
		{"one changed byte", changed, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ta := startPolicyAgent(t, "confguest.tee=snp", fakeSNP(t, doc))
			r, err := ta.client.SetPolicy(ctx(t), &agentv1.SetPolicyRequest{Policy: tc.doc})
			_, listErr := ta.client.ListContainers(ctx(t), &agentv1.ListContainersRequest{})
			_, verErr := ta.client.Version(ctx(t), &agentv1.VersionRequest{})
			if tc.ok {
				if err != nil || !r.GetBound() || listErr != nil || verErr != nil {
					t.Fatalf("SetPolicy(matching) = %v, %v; List = %v; Version = %v, want bound and serving", r, err, listErr, verErr)
				}
				rep, err := ta.client.GetReport(ctx(t), &agentv1.GetReportRequest{ReportData: nonce})
				if err != nil {
					t.Fatalf("GetReport = %v", err)
				}
				ev, err := attest.Split(rep.GetExtendedReport())
				if err != nil {
					t.Fatal(err)
				}
				p, err := abi.ReportToProto(ev.Report)
				want := evidence.ReportData(evidence.HostReport, sha256.Sum256(doc), nonce)
				if err != nil || !bytes.Equal(p.GetReportData(), want[:]) || len(ev.Certificates) == 0 {
					t.Errorf("GetReport = REPORT_DATA %x (%v), %d bytes of certificates, want %x (a host report under the policy) and certificates", p.GetReportData(), err, len(ev.Certificates), want)
				}
				if _, err := ta.client.GetReport(ctx(t), &agentv1.GetReportRequest{ReportData: make([]byte, 65)}); code(err) != codes.InvalidArgument {
					t.Errorf("GetReport(65 bytes) = %v, want InvalidArgument", err)
				}
				return
			}
			for name, err := range map[string]error{"SetPolicy": err, "ListContainers": listErr, "Version": verErr} {
				if code(err) != codes.PermissionDenied {
					t.Errorf("%s after a policy that is not HOST_DATA = %v, want PermissionDenied", name, err)
				}
			}
			if !strings.Contains(ta.logs.String(), "policy binding failed") {
				t.Errorf("agent log does not say why it refuses:\n%s", ta.logs.String())
			}
		})
	}
}

// TestEvidenceEndpointNoTEE checks the workload endpoint of a guest
// booted with confguest.tee=none: a clear "no SEV-SNP device" error.
func TestEvidenceEndpointNoTEE(t *testing.T) {
	ta := startPolicyAgent(t, "confguest.tee=none", nil)
	code, body := getEvidence(t, ta, []byte("nonce"))
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "no SEV-SNP device") {
		t.Errorf("GET evidence = %d %s, want 503 no SEV-SNP device", code, body)
	}
}

// TestAttestationSocketInContainer checks that a container whose entry
// allows attestation sees the evidence socket and one whose entry does
// not, does not.
func TestAttestationSocketInContainer(t *testing.T) {
	ta := startPolicyAgent(t, "confguest.tee=none", nil)
	s := withCgroupNS(t, spec(t, false, "sh", "-c", "test -S "+attest.ContainerSocketPath+" && echo present || echo absent"))
	var ex specs.Spec
	if err := json.Unmarshal(s, &ex); err != nil {
		t.Fatal(err)
	}
	with := entryFor("with", ta.image, &ex, policy.Exactly(ex.Process.Args...))
	with.Attestation, with.Stdout = true, true
	without := with
	without.Name, without.Attestation = "without", false
	doc := policyDoc(t, policy.Policy{Version: policy.Version, Containers: []policy.Container{with}})
	if _, err := ta.client.SetPolicy(ctx(t), &agentv1.SetPolicyRequest{Policy: doc}); err != nil {
		t.Fatal(err)
	}
	ta.create(t, "a", s, nil)
	read := ta.readOutput(t, "a", "", agentv1.OutputStream_OUTPUT_STREAM_STDOUT)
	if _, err := ta.client.StartContainer(ctx(t), &agentv1.StartContainerRequest{ContainerId: "a"}); err != nil {
		t.Fatal(err)
	}
	if out, _ := read(); out != "present\n" {
		t.Errorf("container with attestation: %q, want present", out)
	}

	ta2 := startPolicyAgent(t, "confguest.tee=none", nil)
	without.Rootfs = policy.Rootfs{GuestDirectory: ta2.image}
	doc2 := policyDoc(t, policy.Policy{Version: policy.Version, Containers: []policy.Container{without}})
	if _, err := ta2.client.SetPolicy(ctx(t), &agentv1.SetPolicyRequest{Policy: doc2}); err != nil {
		t.Fatal(err)
	}
	ta2.create(t, "b", s, nil)
	read2 := ta2.readOutput(t, "b", "", agentv1.OutputStream_OUTPUT_STREAM_STDOUT)
	if _, err := ta2.client.StartContainer(ctx(t), &agentv1.StartContainerRequest{ContainerId: "b"}); err != nil {
		t.Fatal(err)
	}
	if out, _ := read2(); out != "absent\n" {
		t.Errorf("container without attestation: %q, want absent", out)
	}
}
