package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	agentv1 "confguest/agent/api/v1/wire"
	"confguest/agent/attest"
	"confguest/agent/authz"
	"confguest/agent/container"
	"confguest/agent/libct"
	"confguest/agent/policy"
	"confguest/agent/request"
)

const (
	// MaxStdinChunk bounds the data of one WriteStdin call.
	MaxStdinChunk = 1 << 20
	// OutputChunkSize bounds the data of one OutputChunk.
	OutputChunkSize = 32 << 10
	// MaxOutputCredit bounds the chunks a reader may have outstanding: the
	// ttrpc client buffers 64 messages per stream.
	MaxOutputCredit = 64
)

// service implements agentv1.AgentService on a container.Manager. It only
// translates between wire messages and the manager; authorization and
// status codes are applied around it (see edgeInterceptors).
type service struct {
	m        *container.Manager
	tee      string
	digest   func() (string, error)
	shutdown func()
	powerOff func() error
	gate     *policy.Gate     // nil: no measured policy (tests)
	attester *attest.Attester // fails with attest.ErrNoDevice without SEV-SNP
	evidence string           // the evidence endpoint's socket, "" for none
}

var _ agentv1.AgentService = (*service)(nil)

func (s *service) Version(ctx context.Context, _ *agentv1.VersionRequest) (*agentv1.VersionResponse, error) {
	d, err := s.digest()
	if err != nil {
		return nil, fmt.Errorf("build digest: %w", err)
	}
	return &agentv1.VersionResponse{AgentVersion: AgentVersion, BuildDigest: d, Tee: s.tee, ApiVersion: APIVersion}, nil
}

func (s *service) CreateContainer(ctx context.Context, r *agentv1.CreateContainerRequest) (*agentv1.CreateContainerResponse, error) {
	// The spec the edge decoded and the policy checked (authz.Decoded).
	d, ok := authz.Decoded(ctx).(*request.CreateContainer)
	if !ok || d.CreateContainerRequest != r {
		return nil, fmt.Errorf("create container: %w", ErrNotDecoded)
	}
	s.addAttestation(d)
	// The admission is recorded only once the container exists, while
	// the manager holds its ID (request.CreateContainer.Admit).
	req := container.CreateRequest{ID: r.GetContainerId(), Spec: d.Spec, PodNamespaces: r.GetPodNamespaces().Types(), Volumes: r.GetVolumes(), Admit: d.Admit}
	if rf := r.GetRootfs(); rf != nil {
		req.Rootfs.ScratchBytes = rf.GetScratchBytes()
		req.Rootfs.GuestDirectory = rf.GetGuestDirectory()
		if b := rf.GetBlock(); b != nil {
			if field, why := b.CheckLayerFormat(); field != "" {
				return nil, fmt.Errorf("%s: %w: %s", field, ErrInvalidRequest, why)
			}
			req.Rootfs.Block = &container.BlockSource{
				Serial: b.GetSerial(), Path: b.GetPath(), FSType: agentv1.LayerFSType, Verity: b.GetVerity().Params(),
			}
		}
	}
	if st := r.GetStdio(); st != nil {
		req.Stdin, req.TTYWidth, req.TTYHeight = st.GetStdin(), st.GetTtyWidth(), st.GetTtyHeight()
	}
	pid, err := s.m.Create(ctx, req)
	if err != nil {
		return nil, err
	}
	return &agentv1.CreateContainerResponse{Pid: uint32(pid)}, nil
}

func (s *service) StartContainer(ctx context.Context, r *agentv1.StartContainerRequest) (*agentv1.StartContainerResponse, error) {
	if err := s.m.Start(ctx, r.GetContainerId()); err != nil {
		return nil, err
	}
	return &agentv1.StartContainerResponse{}, nil
}

func (s *service) ExecProcess(ctx context.Context, r *agentv1.ExecProcessRequest) (*agentv1.ExecProcessResponse, error) {
	d, ok := authz.Decoded(ctx).(*request.ExecProcess)
	if !ok || d.ExecProcessRequest != r {
		return nil, fmt.Errorf("exec process: %w", ErrNotDecoded)
	}
	req := container.ExecRequest{ContainerID: r.GetContainerId(), ExecID: r.GetExecId(), Process: d.Process, Admit: d.Admit}
	if st := r.GetStdio(); st != nil {
		req.Stdin, req.TTYWidth, req.TTYHeight = st.GetStdin(), st.GetTtyWidth(), st.GetTtyHeight()
	}
	pid, err := s.m.Exec(ctx, req)
	if err != nil {
		return nil, err
	}
	return &agentv1.ExecProcessResponse{Pid: uint32(pid)}, nil
}

func (s *service) WaitProcess(ctx context.Context, r *agentv1.WaitProcessRequest) (*agentv1.WaitProcessResponse, error) {
	st, err := s.m.Wait(ctx, r.GetProcess().GetContainerId(), r.GetProcess().GetExecId())
	if err != nil {
		return nil, err
	}
	return &agentv1.WaitProcessResponse{ExitCode: int32(st.Code), Signal: int32(st.Signal), ExitedAtUnixNano: st.ExitedAt.UnixNano()}, nil
}

func (s *service) SignalProcess(ctx context.Context, r *agentv1.SignalProcessRequest) (*agentv1.SignalProcessResponse, error) {
	sig := r.GetSignal()
	if sig > math.MaxInt32 {
		return nil, fmt.Errorf("signal: %w: %d is not a signal number", ErrInvalidRequest, sig)
	}
	if err := s.m.Signal(ctx, r.GetProcess().GetContainerId(), r.GetProcess().GetExecId(), int(sig), r.GetAll()); err != nil {
		return nil, err
	}
	return &agentv1.SignalProcessResponse{}, nil
}

func (s *service) UpdateVolume(ctx context.Context, r *agentv1.UpdateVolumeRequest) (*agentv1.UpdateVolumeResponse, error) {
	if err := s.m.UpdateVolume(ctx, r.GetContainerId(), r.GetDestination(), r.GetFiles().GetEntries()); err != nil {
		return nil, err
	}
	return &agentv1.UpdateVolumeResponse{}, nil
}

// UpdateContainer changes a container's cgroup limits (the policy allowed
// each group the request sets; container.CheckUpdate bounds the values).
func (s *service) UpdateContainer(ctx context.Context, r *agentv1.UpdateContainerRequest) (*agentv1.UpdateContainerResponse, error) {
	if err := s.m.Update(ctx, r); err != nil {
		return nil, err
	}
	return &agentv1.UpdateContainerResponse{}, nil
}

func (s *service) ReadVolume(ctx context.Context, r *agentv1.ReadVolumeRequest) (*agentv1.ReadVolumeResponse, error) {
	data, truncated, err := s.m.ReadVolume(ctx, r.GetContainerId(), r.GetDestination())
	if err != nil {
		return nil, err
	}
	return &agentv1.ReadVolumeResponse{Data: data, Truncated: truncated}, nil
}

func (s *service) ResizeTTY(ctx context.Context, r *agentv1.ResizeTTYRequest) (*agentv1.ResizeTTYResponse, error) {
	if err := s.m.ResizeTTY(ctx, r.GetProcess().GetContainerId(), r.GetProcess().GetExecId(), r.GetWidth(), r.GetHeight()); err != nil {
		return nil, err
	}
	return &agentv1.ResizeTTYResponse{}, nil
}

func (s *service) WriteStdin(ctx context.Context, r *agentv1.WriteStdinRequest) (*agentv1.WriteStdinResponse, error) {
	if len(r.GetData()) > MaxStdinChunk {
		return nil, fmt.Errorf("data: %w: %d bytes, send at most %d per call", ErrInvalidRequest, len(r.GetData()), MaxStdinChunk)
	}
	n, err := s.m.WriteStdin(ctx, r.GetProcess().GetContainerId(), r.GetProcess().GetExecId(), r.GetData())
	if err != nil {
		return nil, err
	}
	return &agentv1.WriteStdinResponse{Written: uint32(n)}, nil
}

func (s *service) CloseStdin(ctx context.Context, r *agentv1.CloseStdinRequest) (*agentv1.CloseStdinResponse, error) {
	if err := s.m.CloseStdin(ctx, r.GetProcess().GetContainerId(), r.GetProcess().GetExecId()); err != nil {
		return nil, err
	}
	return &agentv1.CloseStdinResponse{}, nil
}

// ReadOutput streams one output stream of a process. The agent sends a
// chunk only against credit the reader granted, so the ttrpc client's
// per-stream buffer never overflows; while the reader holds the stream
// the process blocks on a full buffer instead of losing output. The bytes
// sent stay in the buffer until the reader acknowledges them (received), so
// a reader whose connection dropped resumes where it was (resume).
func (s *service) ReadOutput(ctx context.Context, ss agentv1.Agent_ReadOutputServer) error {
	first, err := ss.Recv()
	if err != nil {
		return fmt.Errorf("read output: first request: %w", err)
	}
	p, err := s.m.Process(first.GetProcess().GetContainerId(), first.GetProcess().GetExecId())
	if err != nil {
		return err
	}
	buf := p.Output(first.GetStream() == agentv1.OutputStream_OUTPUT_STREAM_STDERR)
	var resume *uint64
	if first.GetResume() {
		resume = &first.Received
	}
	detach, err := buf.Attach(resume)
	if err != nil {
		return err
	}
	defer detach()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cr := &credit{changed: make(chan struct{}, 1)}
	if err := cr.add(first.GetCredit()); err != nil {
		return err
	}
	go func() {
		for {
			r, err := ss.Recv()
			if err == nil && r.GetReceived() > 0 {
				if err = buf.Ack(r.GetReceived()); err != nil {
					err = fmt.Errorf("read output: %w", err)
					cr.end(err)
					cancel() // a reader that claims bytes it was not sent gets no more
					return
				}
			}
			if err == nil {
				err = cr.add(r.GetCredit())
			}
			if err != nil {
				cr.end(err)
				return
			}
		}
	}()
	for {
		if err := cr.take(ctx); err != nil {
			if errors.Is(err, io.EOF) {
				return nil // the reader closed its side and used up its credit
			}
			return err
		}
		c, err := buf.Read(ctx, OutputChunkSize)
		if err != nil {
			if rerr := cr.failed(); rerr != nil {
				return rerr
			}
			return err
		}
		if err := ss.Send(&agentv1.OutputChunk{Data: c.Data, Offset: c.Offset, DroppedBytes: c.Dropped, Eof: c.EOF}); err != nil {
			return fmt.Errorf("send output: %w", err)
		}
		if c.EOF {
			return nil
		}
	}
}

// credit counts the chunks a reader may still receive.
type credit struct {
	mu      sync.Mutex
	n       uint64
	err     error // set when the reader's side ended
	changed chan struct{}
}

func (c *credit) add(n uint32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n+uint64(n) > MaxOutputCredit {
		return fmt.Errorf("credit: %w: more than %d chunks outstanding", ErrInvalidRequest, MaxOutputCredit)
	}
	c.n += uint64(n)
	c.notify()
	return nil
}

func (c *credit) end(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.err = err
	c.notify()
}

func (c *credit) notify() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// failed returns the error that ended the reader's side, unless it closed
// it cleanly.
func (c *credit) failed() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if errors.Is(c.err, io.EOF) {
		return nil
	}
	return c.err
}

// take waits for one unit of credit. With none left it returns the error
// that ended the reader's side (io.EOF on a clean close); a reader's side
// that failed ends the stream at once.
func (c *credit) take(ctx context.Context) error {
	for {
		if err := c.failed(); err != nil {
			return err
		}
		c.mu.Lock()
		if c.n > 0 {
			c.n--
			c.mu.Unlock()
			return nil
		}
		err := c.err
		c.mu.Unlock()
		if err != nil {
			return err
		}
		select {
		case <-c.changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// DeleteContainer forgets the container's admission before the manager
// frees its ID: a create on the ID fails in the manager until the
// container is gone, so none can bind it to another policy entry.
func (s *service) DeleteContainer(ctx context.Context, r *agentv1.DeleteContainerRequest) (*agentv1.DeleteContainerResponse, error) {
	if s.gate != nil {
		s.gate.Forget(r.GetContainerId())
	}
	if err := s.m.Delete(ctx, r.GetContainerId()); err != nil {
		return nil, err
	}
	return &agentv1.DeleteContainerResponse{}, nil
}

func infoToProto(i container.Info) *agentv1.ContainerInfo {
	return &agentv1.ContainerInfo{Id: i.ID, Status: i.Status, Pid: uint32(i.Pid), CreatedAtUnixNano: i.Created.UnixNano(), ExecIds: i.ExecIDs}
}

func (s *service) ListContainers(ctx context.Context, _ *agentv1.ListContainersRequest) (*agentv1.ListContainersResponse, error) {
	resp := &agentv1.ListContainersResponse{}
	for _, i := range s.m.List(ctx) {
		resp.Containers = append(resp.Containers, infoToProto(i))
	}
	return resp, nil
}

func (s *service) State(ctx context.Context, r *agentv1.StateRequest) (*agentv1.StateResponse, error) {
	i, err := s.m.State(ctx, r.GetContainerId())
	if err != nil {
		return nil, err
	}
	return &agentv1.StateResponse{Container: infoToProto(i)}, nil
}

// Stats reads a container's cgroup statistics, or the agent's own memory
// when the request names no container.
func (s *service) Stats(ctx context.Context, r *agentv1.StatsRequest) (*agentv1.StatsResponse, error) {
	if r.GetContainerId() == "" {
		a, err := readAgentStats(procSelfStatus)
		if err != nil {
			return nil, err
		}
		return &agentv1.StatsResponse{Agent: a}, nil
	}
	st, err := s.m.Stats(ctx, r.GetContainerId())
	if err != nil {
		return nil, err
	}
	return statsToProto(st), nil
}

// limit is a cgroup limit as the API reports it: 0 for none. cgroup v2
// reads "max" (libcontainer: MaxUint64); cgroup v1 reads an unlimited
// memory limit as MaxInt64 rounded down to a page.
func limit(v uint64) uint64 {
	if v >= math.MaxInt64&^0xfff {
		return 0 // unlimited
	}
	return v
}

func statsToProto(st *libct.Stats) *agentv1.StatsResponse {
	return &agentv1.StatsResponse{
		Memory: &agentv1.MemoryStats{
			UsageBytes: st.MemoryUsage, LimitBytes: limit(st.MemoryLimit), MaxUsageBytes: st.MemoryMaxUsage,
			InactiveFileBytes: st.InactiveFile,
		},
		Cpu: &agentv1.CPUStats{
			UsageNanos: st.CPUUsage, UserNanos: st.CPUUser, SystemNanos: st.CPUSystem,
			ThrottledPeriods: st.ThrottledPeriods, ThrottledNanos: st.ThrottledTime,
		},
		Pids: &agentv1.PidsStats{Current: st.PidsCurrent, Limit: limit(st.PidsLimit)},
	}
}

func (s *service) Shutdown(ctx context.Context, _ *agentv1.ShutdownRequest) (*agentv1.ShutdownResponse, error) {
	if err := s.m.Close(ctx); err != nil {
		return nil, err
	}
	if s.powerOff != nil {
		if err := s.powerOff(); err != nil {
			return nil, fmt.Errorf("request power-off: %w", err)
		}
		return &agentv1.ShutdownResponse{}, nil
	}
	s.shutdown()
	return &agentv1.ShutdownResponse{}, nil
}
