package launcher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentv1 "confguest/agent/api/v1"
)

// fakeAgent is an in-process stand-in for the guest agent, served over real ttrpc on a unix
// socket. It implements the API's documented behaviour (credit-based ReadOutput, stdin,
// wait) with simulated processes whose behaviour follows their argv:
//
//	echo ARGS...     prints ARGS to stdout, exits 0
//	sh -c "exit N"   exits N
//	cat              copies stdin to stdout until stdin is closed
//	stderr MSG       prints MSG to stderr, exits 3
//	big N            prints N bytes of 'x' in 1000-byte chunks
type fakeAgent struct {
	mu         sync.Mutex
	containers map[string]*fakeContainer
	procs      map[string]*fakeProc // container/exec
	shutdown   bool
	// policy is what SetPolicy received; policyReply, if set, answers it instead of
	// the real hash, unbound.
	policy      []byte
	policyReply *agentv1.SetPolicyResponse
	policyErr   error
	// hidden are the output streams the policy does not let the host read.
	hidden [2]bool
}

type fakeContainer struct {
	req     *agentv1.CreateContainerRequest
	spec    specs.Spec
	started bool
}

type fakeProc struct {
	args    []string
	out     [2]*fakeStream
	stdin   chan []byte
	exited  chan struct{}
	code    int32
	started chan struct{}
}

type fakeStream struct {
	mu   sync.Mutex
	cond *sync.Cond
	data [][]byte
	eof  bool
}

func newStream() *fakeStream {
	s := &fakeStream{}
	s.cond = sync.NewCond(&s.mu)
	return s
}

func (s *fakeStream) write(b []byte) {
	s.mu.Lock()
	s.data = append(s.data, append([]byte(nil), b...))
	s.cond.Broadcast()
	s.mu.Unlock()
}

func (s *fakeStream) close() {
	s.mu.Lock()
	s.eof = true
	s.cond.Broadcast()
	s.mu.Unlock()
}

func newFakeAgent() *fakeAgent {
	return &fakeAgent{containers: map[string]*fakeContainer{}, procs: map[string]*fakeProc{}}
}

func key(r *agentv1.ProcessRef) string { return r.GetContainerId() + "/" + r.GetExecId() }

func (a *fakeAgent) newProc(k string, args []string) *fakeProc {
	p := &fakeProc{args: args, out: [2]*fakeStream{newStream(), newStream()},
		stdin: make(chan []byte, 16), exited: make(chan struct{}), started: make(chan struct{})}
	a.procs[k] = p
	go p.run()
	return p
}

func (p *fakeProc) run() {
	<-p.started
	defer close(p.exited)
	defer p.out[0].close()
	defer p.out[1].close()
	switch {
	case len(p.args) > 0 && p.args[0] == "echo":
		p.out[0].write([]byte(strings.Join(p.args[1:], " ") + "\n"))
	case len(p.args) == 3 && p.args[0] == "sh" && strings.HasPrefix(p.args[2], "exit "):
		n, _ := strconv.Atoi(strings.TrimPrefix(p.args[2], "exit "))
		p.code = int32(n)
	case len(p.args) > 0 && p.args[0] == "cat":
		for b := range p.stdin {
			p.out[0].write(b)
		}
	case len(p.args) == 2 && p.args[0] == "stderr":
		p.out[1].write([]byte(p.args[1]))
		p.code = 3
	case len(p.args) == 2 && p.args[0] == "big":
		n, _ := strconv.Atoi(p.args[1])
		for n > 0 {
			c := min(n, 1000)
			p.out[0].write([]byte(strings.Repeat("x", c)))
			n -= c
		}
	default:
		p.out[1].write([]byte(fmt.Sprintf("%q: not found\n", p.args)))
		p.code = 127
	}
}

func (a *fakeAgent) proc(r *agentv1.ProcessRef) (*fakeProc, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p, ok := a.procs[key(r)]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "process %s not found", key(r))
	}
	return p, nil
}

// SetPolicy records the policy and answers its SHA-256, unbound (a tee=none guest).
func (a *fakeAgent) SetPolicy(_ context.Context, r *agentv1.SetPolicyRequest) (*agentv1.SetPolicyResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.policy != nil {
		return nil, status.Errorf(codes.PermissionDenied, "denied by policy rule agent.replace_policy: SetPolicy: the installed policy does not allow replacing it")
	}
	if a.policyErr != nil {
		return nil, a.policyErr
	}
	a.policy = r.GetPolicy()
	if a.policyReply != nil {
		return a.policyReply, nil
	}
	sum := sha256.Sum256(r.GetPolicy())
	return &agentv1.SetPolicyResponse{Sha256: hex.EncodeToString(sum[:])}, nil
}

// GetReport: the launcher does not call it.
func (a *fakeAgent) GetReport(context.Context, *agentv1.GetReportRequest) (*agentv1.GetReportResponse, error) {
	return nil, status.Errorf(codes.Unimplemented, "GetReport")
}

func (a *fakeAgent) Version(context.Context, *agentv1.VersionRequest) (*agentv1.VersionResponse, error) {
	return &agentv1.VersionResponse{AgentVersion: "fake", Tee: "none", ApiVersion: "v1"}, nil
}

func (a *fakeAgent) CreateContainer(_ context.Context, r *agentv1.CreateContainerRequest) (*agentv1.CreateContainerResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, dup := a.containers[r.GetContainerId()]; dup {
		return nil, status.Errorf(codes.AlreadyExists, "container %s exists", r.GetContainerId())
	}
	c := &fakeContainer{req: r}
	if err := json.Unmarshal(r.GetSpecJson(), &c.spec); err != nil || c.spec.Process == nil {
		return nil, status.Errorf(codes.InvalidArgument, "spec_json: %v", err)
	}
	if r.GetRootfs().GetBlock().GetVerity().GetRootHash() == "" {
		return nil, status.Errorf(codes.InvalidArgument, "rootfs.block.verity.root_hash: empty")
	}
	a.containers[r.GetContainerId()] = c
	a.newProc(r.GetContainerId()+"/", c.spec.Process.Args)
	return &agentv1.CreateContainerResponse{Pid: 1}, nil
}

func (a *fakeAgent) StartContainer(_ context.Context, r *agentv1.StartContainerRequest) (*agentv1.StartContainerResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.containers[r.GetContainerId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "container %s", r.GetContainerId())
	}
	if c.started {
		return nil, status.Errorf(codes.FailedPrecondition, "container %s already started", r.GetContainerId())
	}
	c.started = true
	close(a.procs[r.GetContainerId()+"/"].started)
	return &agentv1.StartContainerResponse{}, nil
}

func (a *fakeAgent) ExecProcess(_ context.Context, r *agentv1.ExecProcessRequest) (*agentv1.ExecProcessResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.containers[r.GetContainerId()]; !ok {
		return nil, status.Errorf(codes.NotFound, "container %s", r.GetContainerId())
	}
	var sp specs.Process
	if err := json.Unmarshal(r.GetProcessJson(), &sp); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "process_json: %v", err)
	}
	p := a.newProc(r.GetContainerId()+"/"+r.GetExecId(), sp.Args)
	close(p.started)
	return &agentv1.ExecProcessResponse{Pid: 2}, nil
}

func (a *fakeAgent) WaitProcess(ctx context.Context, r *agentv1.WaitProcessRequest) (*agentv1.WaitProcessResponse, error) {
	p, err := a.proc(r.GetProcess())
	if err != nil {
		return nil, err
	}
	select {
	case <-p.exited:
		return &agentv1.WaitProcessResponse{ExitCode: p.code}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (a *fakeAgent) SignalProcess(context.Context, *agentv1.SignalProcessRequest) (*agentv1.SignalProcessResponse, error) {
	return &agentv1.SignalProcessResponse{}, nil
}

func (a *fakeAgent) UpdateVolume(context.Context, *agentv1.UpdateVolumeRequest) (*agentv1.UpdateVolumeResponse, error) {
	return &agentv1.UpdateVolumeResponse{}, nil
}

func (a *fakeAgent) UpdateContainer(context.Context, *agentv1.UpdateContainerRequest) (*agentv1.UpdateContainerResponse, error) {
	return &agentv1.UpdateContainerResponse{}, nil
}

func (a *fakeAgent) ReadVolume(context.Context, *agentv1.ReadVolumeRequest) (*agentv1.ReadVolumeResponse, error) {
	return &agentv1.ReadVolumeResponse{}, nil
}

func (a *fakeAgent) ConfigureNetwork(context.Context, *agentv1.ConfigureNetworkRequest) (*agentv1.ConfigureNetworkResponse, error) {
	return &agentv1.ConfigureNetworkResponse{}, nil
}

func (a *fakeAgent) ResizeTTY(context.Context, *agentv1.ResizeTTYRequest) (*agentv1.ResizeTTYResponse, error) {
	return &agentv1.ResizeTTYResponse{}, nil
}

func (a *fakeAgent) WriteStdin(_ context.Context, r *agentv1.WriteStdinRequest) (*agentv1.WriteStdinResponse, error) {
	p, err := a.proc(r.GetProcess())
	if err != nil {
		return nil, err
	}
	p.stdin <- append([]byte(nil), r.GetData()...)
	return &agentv1.WriteStdinResponse{Written: uint32(len(r.GetData()))}, nil
}

func (a *fakeAgent) CloseStdin(_ context.Context, r *agentv1.CloseStdinRequest) (*agentv1.CloseStdinResponse, error) {
	p, err := a.proc(r.GetProcess())
	if err != nil {
		return nil, err
	}
	close(p.stdin)
	return &agentv1.CloseStdinResponse{}, nil
}

// ReadOutput sends chunks only while the reader has credit, as the API documents.
func (a *fakeAgent) ReadOutput(ctx context.Context, srv agentv1.Agent_ReadOutputServer) error {
	first, err := srv.Recv()
	if err != nil {
		return err
	}
	p, err := a.proc(first.GetProcess())
	if err != nil {
		return err
	}
	if a.hidden[first.GetStream()] {
		name := first.GetStream().Name()
		return status.Errorf(codes.PermissionDenied, "read output: first request: denied by policy rule containers[main].%s: stream: the policy does not allow reading %s", name, name)
	}
	s := p.out[first.GetStream()]
	var cmu sync.Mutex
	credit := first.GetCredit()
	go func() {
		for {
			r, err := srv.Recv()
			if err != nil {
				return
			}
			cmu.Lock()
			credit += r.GetCredit()
			cmu.Unlock()
			s.mu.Lock()
			s.cond.Broadcast()
			s.mu.Unlock()
		}
	}()
	var off uint64
	for i := 0; ; i++ {
		s.mu.Lock()
		for {
			cmu.Lock()
			c := credit
			cmu.Unlock()
			if (i < len(s.data) && c > 0) || (i >= len(s.data) && s.eof) || ctx.Err() != nil {
				break
			}
			s.cond.Wait()
		}
		if ctx.Err() != nil {
			s.mu.Unlock()
			return ctx.Err()
		}
		if i >= len(s.data) {
			s.mu.Unlock()
			return srv.Send(&agentv1.OutputChunk{Offset: off, Eof: true})
		}
		b := s.data[i]
		s.mu.Unlock()
		cmu.Lock()
		credit--
		cmu.Unlock()
		if err := srv.Send(&agentv1.OutputChunk{Data: b, Offset: off}); err != nil {
			return err
		}
		off += uint64(len(b))
	}
}

func (a *fakeAgent) DeleteContainer(_ context.Context, r *agentv1.DeleteContainerRequest) (*agentv1.DeleteContainerResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.containers, r.GetContainerId())
	return &agentv1.DeleteContainerResponse{}, nil
}

func (a *fakeAgent) ListContainers(context.Context, *agentv1.ListContainersRequest) (*agentv1.ListContainersResponse, error) {
	return &agentv1.ListContainersResponse{}, nil
}

func (a *fakeAgent) State(context.Context, *agentv1.StateRequest) (*agentv1.StateResponse, error) {
	return nil, status.Error(codes.Unimplemented, "fake")
}

func (a *fakeAgent) Stats(context.Context, *agentv1.StatsRequest) (*agentv1.StatsResponse, error) {
	return nil, status.Error(codes.Unimplemented, "fake")
}

func (a *fakeAgent) Shutdown(context.Context, *agentv1.ShutdownRequest) (*agentv1.ShutdownResponse, error) {
	a.mu.Lock()
	a.shutdown = true
	a.mu.Unlock()
	return &agentv1.ShutdownResponse{}, nil
}

// listenFakeAgent serves a over ttrpc on a new unix socket, whose path it returns.
func listenFakeAgent(t *testing.T, a *fakeAgent) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	agentv1.RegisterAgentService(srv, a)
	go srv.Serve(context.Background(), ln)
	t.Cleanup(func() { srv.Close() })
	return path
}

// serveFakeAgent serves a on a unix socket and returns a Guest connected to it.
func serveFakeAgent(t *testing.T, a *fakeAgent) *Guest {
	t.Helper()
	conn, err := net.Dial("unix", listenFakeAgent(t, a))
	if err != nil {
		t.Fatal(err)
	}
	c := ttrpc.NewClient(conn)
	t.Cleanup(func() { c.Close() })
	return NewGuest(agentv1.NewAgentClient(c))
}
