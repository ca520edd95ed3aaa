package policy

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	agentv1 "confguest/agent/api/v1/wire"
	"confguest/agent/authz"
	"confguest/agent/request"
)

// Full method names of the agent API, as the authorization point sees them.
const (
	prefix                 = "/" + agentv1.ServiceName + "/"
	MethodVersion          = prefix + "Version"
	MethodSetPolicy        = prefix + "SetPolicy"
	MethodGetReport        = prefix + "GetReport"
	MethodCreateContainer  = prefix + "CreateContainer"
	MethodStartContainer   = prefix + "StartContainer"
	MethodExecProcess      = prefix + "ExecProcess"
	MethodWaitProcess      = prefix + "WaitProcess"
	MethodSignalProcess    = prefix + "SignalProcess"
	MethodResizeTTY        = prefix + "ResizeTTY"
	MethodWriteStdin       = prefix + "WriteStdin"
	MethodCloseStdin       = prefix + "CloseStdin"
	MethodReadOutput       = prefix + "ReadOutput"
	MethodDeleteContainer  = prefix + "DeleteContainer"
	MethodListContainers   = prefix + "ListContainers"
	MethodState            = prefix + "State"
	MethodStats            = prefix + "Stats"
	MethodShutdown         = prefix + "Shutdown"
	MethodUpdateVolume     = prefix + "UpdateVolume"
	MethodReadVolume       = prefix + "ReadVolume"
	MethodUpdateContainer  = prefix + "UpdateContainer"
	MethodConfigureNetwork = prefix + "ConfigureNetwork"
)

// sigKill is SIGKILL's number on Linux, the one signal the policy lets
// the host send to any process.
const sigKill = 9

// Denial is a request the policy refuses: the rule that refused it and
// the request field it looked at. It never carries a value from the
// request other than IDs and names (env and args may hold secrets).
type Denial struct {
	Rule   string // e.g. containers[web].args, agent.stats
	Field  string // e.g. spec.process.args[1]
	Reason string
}

func deny(rule, field, reason string) *Denial {
	return &Denial{Rule: rule, Field: field, Reason: reason}
}

func (d *Denial) Error() string {
	return fmt.Sprintf("denied by policy rule %s: %s: %s", d.Rule, d.Field, d.Reason)
}

// Is makes a denial match authz.ErrDenied (PermissionDenied at the edge).
func (d *Denial) Is(target error) bool { return target == authz.ErrDenied }

// Evaluator decides on every request of the agent API under one policy.
// It remembers which entry admitted each container and exec'd process;
// later calls on them follow that entry's rules. A container is admitted
// only once its create succeeded (request.CreateContainer.Admit, called
// by the container manager while it holds the ID) and stays tied to its
// entry until Forget, which the agent calls before the manager frees the
// ID: a create on an ID that is in use, admitted or not, can never bind
// the live container to another entry.
type Evaluator struct {
	p      *Policy
	rootfs map[string][]int // rootfsKey -> indexes into p.Containers

	mu         sync.Mutex
	containers map[string]*Container // container ID -> admitting entry
	execs      map[[2]string]*Exec   // {container ID, exec ID} -> admitting exec rule
}

// NewEvaluator returns an evaluator for p with no containers admitted.
func NewEvaluator(p *Policy) *Evaluator {
	e := &Evaluator{p: p, rootfs: map[string][]int{}, containers: map[string]*Container{}, execs: map[[2]string]*Exec{}}
	for i := range p.Containers {
		k := rootfsKey(p.Containers[i].Rootfs)
		e.rootfs[k] = append(e.rootfs[k], i)
	}
	return e
}

// Policy returns the policy the evaluator enforces.
func (e *Evaluator) Policy() *Policy { return e.p }

func rootfsKey(r Rootfs) string {
	switch {
	case r.GuestDirectory != "":
		return "dir:" + r.GuestDirectory
	case r.Signed != nil:
		return signedKey
	}
	return "layers:" + strings.Join(r.Layers, ",")
}

// signedKey groups the entries that admit block rootfs by signer.
const signedKey = "signed"

// Forget drops what the evaluator remembers about a deleted container.
func (e *Evaluator) Forget(containerID string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.containers, containerID)
	for k := range e.execs {
		if k[0] == containerID {
			delete(e.execs, k)
		}
	}
}

// ForgetExec drops what the evaluator remembers about an exec'd process
// the agent no longer keeps.
func (e *Evaluator) ForgetExec(containerID, execID string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.execs, [2]string{containerID, execID})
}

// Authorize decides on one decoded request (request.Decode: a
// CreateContainer or ExecProcess arrives with its JSON decoded, and the
// raw message is refused). A refusal is a *Denial (matching
// authz.ErrDenied). Methods the policy format does not know are refused.
func (e *Evaluator) Authorize(ctx context.Context, method string, req any) error {
	if d := e.evaluate(ctx, method, req); d != nil {
		return d
	}
	return nil
}

func (e *Evaluator) evaluate(ctx context.Context, method string, req any) *Denial {
	switch method {
	case MethodVersion, MethodListContainers:
		return nil
	case MethodGetReport:
		if !e.p.Agent.GetReport {
			return deny("agent.get_report", "GetReport", "the policy does not allow the host to ask for attestation reports")
		}
		return nil
	case MethodSetPolicy:
		if !e.p.Agent.ReplacePolicy {
			return deny("agent.replace_policy", "SetPolicy", "the installed policy does not allow replacing it")
		}
		return nil
	case MethodStats:
		if !e.p.Agent.Stats {
			return deny("agent.stats", "Stats", "the policy does not allow reading statistics")
		}
		// An empty container ID asks for the agent's own memory, which
		// agent.stats alone allows; a container must have been admitted.
		if r, ok := req.(*agentv1.StatsRequest); ok && r.GetContainerId() != "" {
			_, d := e.container(r.GetContainerId())
			return d
		}
		return nil
	case MethodConfigureNetwork:
		if !e.p.Agent.PodNetwork {
			return deny("agent.pod_network", "ConfigureNetwork", "the policy does not allow the pod a network interface")
		}
		return nil
	case MethodShutdown:
		if !e.p.Agent.Shutdown {
			return deny("agent.shutdown", "Shutdown", "the policy does not allow shutting the agent down")
		}
		return nil
	}
	switch r := req.(type) {
	case *request.CreateContainer:
		if method == MethodCreateContainer {
			return e.create(r)
		}
	case *agentv1.StartContainerRequest:
		if method == MethodStartContainer {
			_, d := e.container(r.GetContainerId())
			return d
		}
	case *agentv1.DeleteContainerRequest:
		if method == MethodDeleteContainer {
			// Deleting only removes, and the host can stop the VM anyway:
			// allowed on any container, also one never admitted or whose
			// entry a policy replacement dropped (it can be reached no
			// other way).
			return nil
		}
	case *agentv1.StateRequest:
		if method == MethodState {
			_, d := e.container(r.GetContainerId())
			return d
		}
	case *request.ExecProcess:
		if method == MethodExecProcess {
			return e.exec(r)
		}
	case *agentv1.WaitProcessRequest:
		if method == MethodWaitProcess {
			_, _, d := e.process(r.GetProcess())
			return d
		}
	case *agentv1.SignalProcessRequest:
		if method == MethodSignalProcess {
			if r.GetSignal() == sigKill {
				return nil // only removes, as DeleteContainer: stopping a pod kills before it deletes
			}
			_, _, d := e.process(r.GetProcess())
			return d
		}
	case *agentv1.UpdateVolumeRequest:
		if method == MethodUpdateVolume {
			c, d := e.container(r.GetContainerId())
			if d != nil {
				return d
			}
			return volumeDenial(c, "destination", r.GetDestination(), volumeFiles)
		}
	case *agentv1.UpdateContainerRequest:
		if method == MethodUpdateContainer {
			c, d := e.container(r.GetContainerId())
			if d != nil {
				return d
			}
			return updateDenial(c, r)
		}
	case *agentv1.ReadVolumeRequest:
		if method == MethodReadVolume {
			c, d := e.container(r.GetContainerId())
			if d != nil {
				return d
			}
			return readBackDenial(c, r.GetDestination())
		}
	case *agentv1.ResizeTTYRequest:
		if method == MethodResizeTTY {
			return e.processRule(r.GetProcess(), "tty", func(c *Container, x *Exec) bool {
				if x != nil {
					return x.TTY
				}
				return c.TTY
			})
		}
	case *agentv1.WriteStdinRequest:
		if method == MethodWriteStdin {
			return e.processRule(r.GetProcess(), "stdin", stdinAllowed)
		}
	case *agentv1.CloseStdinRequest:
		if method == MethodCloseStdin {
			return e.processRule(r.GetProcess(), "stdin", stdinAllowed)
		}
	case *agentv1.ReadOutputRequest:
		if method == MethodReadOutput {
			if authz.Continuation(ctx) {
				return nil // credit for a stream admitted with its first message; the handler reads nothing else
			}
			return e.readOutput(r)
		}
	}
	return deny("default", method, "no policy rule allows this call")
}

// updateDenial refuses an UpdateContainer request that sets a group of
// limits (memory, cpu, pids: a present message) entry c does not list in
// update_resources.
func updateDenial(c *Container, r *agentv1.UpdateContainerRequest) *Denial {
	for _, g := range []struct {
		name string
		set  bool
	}{{"memory", r.GetMemory() != nil}, {"cpu", r.GetCpu() != nil}, {"pids", r.GetPids() != nil}} {
		if g.set && !slices.Contains(c.UpdateResources, g.name) {
			return deny("containers["+c.Name+"].update_resources", g.name, "the policy does not allow changing this container's "+g.name+" limits")
		}
	}
	return nil
}

func stdinAllowed(c *Container, x *Exec) bool {
	if x != nil {
		return x.Stdin
	}
	return c.Stdin
}

// container returns the entry that admitted container id.
func (e *Evaluator) container(id string) (*Container, *Denial) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.containers[id]
	if !ok {
		return nil, deny("containers", "container_id", fmt.Sprintf("container %q was not admitted by the policy", id))
	}
	return c, nil
}

// process returns the entry (and exec rule, for exec'd processes) that
// admitted ref.
func (e *Evaluator) process(ref *agentv1.ProcessRef) (*Container, *Exec, *Denial) {
	c, d := e.container(ref.GetContainerId())
	if d != nil || ref.GetExecId() == "" {
		return c, nil, d
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.execs[[2]string{ref.GetContainerId(), ref.GetExecId()}]
	if !ok {
		return nil, nil, deny("containers["+c.Name+"].exec", "exec_id", fmt.Sprintf("process %q was not admitted by the policy", ref.GetExecId()))
	}
	return c, x, nil
}

func (e *Evaluator) processRule(ref *agentv1.ProcessRef, name string, allowed func(*Container, *Exec) bool) *Denial {
	c, x, d := e.process(ref)
	if d != nil {
		return d
	}
	if !allowed(c, x) {
		rule := "containers[" + c.Name + "]." + name
		if x != nil {
			rule = "containers[" + c.Name + "].exec." + name
		}
		return deny(rule, "process", "the policy does not allow "+name+" for this process")
	}
	return nil
}

func (e *Evaluator) readOutput(r *agentv1.ReadOutputRequest) *Denial {
	if r.GetProcess().GetContainerId() == "" && r.GetProcess().GetExecId() == "" {
		return nil // a credit-only follow-up message: the stream's process was checked with its first message
	}
	c, _, d := e.process(r.GetProcess())
	if d != nil {
		return d
	}
	if r.GetStream() == agentv1.OutputStream_OUTPUT_STREAM_STDERR {
		if !c.Stderr {
			return deny("containers["+c.Name+"].stderr", "stream", "the policy does not allow reading stderr")
		}
		return nil
	}
	if !c.Stdout {
		return deny("containers["+c.Name+"].stdout", "stream", "the policy does not allow reading stdout")
	}
	return nil
}

func (e *Evaluator) create(r *request.CreateContainer) *Denial {
	var cands []int
	var what string
	rf := r.GetRootfs()
	switch {
	case rf.GetBlock() != nil:
		if field, why := rf.GetBlock().CheckLayerFormat(); field != "" {
			return deny("rootfs.layers", field, why)
		}
		h := strings.ToLower(rf.GetBlock().GetVerity().GetRootHash())
		// Entries that pin this root hash first, then those that trust a signer.
		cands = append(slices.Clone(e.rootfs["layers:"+h]), e.rootfs[signedKey]...)
		what = "layer root hash " + h
	case rf.GetGuestDirectory() != "":
		cands, what = e.rootfs["dir:"+rf.GetGuestDirectory()], "guest directory "+rf.GetGuestDirectory()
	default:
		return deny("containers", "rootfs", "missing")
	}
	if len(cands) == 0 {
		return deny("containers", "rootfs", what+" is in no container of the policy")
	}
	id := r.GetContainerId()
	if prev, _ := e.container(id); prev != nil {
		return deny("containers["+prev.Name+"]", "container_id", fmt.Sprintf("container %q was admitted under this entry and exists: delete it before reusing its ID", id))
	}
	// The denial returned is the first entry's, unless an entry admits the spec and
	// denies only a volume: that entry is the container's, and its denial names the
	// destination.
	var first, volume *Denial
	for _, i := range cands {
		c := &e.p.Containers[i]
		d := checkSigned(c, r.GetRootfs().GetBlock(), r.GetRootfsAttestation())
		if d == nil {
			d = checkSpec(c, r.Spec, r.GetStdio().GetStdin(), r.GetPodNamespaces().Types())
		}
		if d == nil {
			if d = checkVolumes(c, r.GetVolumes()); d != nil && volume == nil {
				volume = d
			}
		}
		if d == nil {
			r.Admit = func() error { return e.admit(id, c) }
			r.Attestation = c.Attestation
			return nil
		}
		if first == nil {
			first = d
		}
	}
	if volume != nil {
		return volume
	}
	return first
}

// admit records that container id, just created, runs under entry c.
func (e *Evaluator) admit(id string, c *Container) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if prev, ok := e.containers[id]; ok {
		return deny("containers["+prev.Name+"]", "container_id", fmt.Sprintf("container %q was admitted under this entry and exists: delete it before reusing its ID", id))
	}
	e.containers[id] = c
	return nil
}

func (e *Evaluator) exec(r *request.ExecProcess) *Denial {
	c, d := e.container(r.GetContainerId())
	if d != nil {
		return d
	}
	rule := "containers[" + c.Name + "].exec"
	p := r.Process
	if field, fr := refusedField(reflect.ValueOf(p), "process", "process_json"); field != "" {
		return deny(rule, field, "refused: "+fr.why)
	}
	key := [2]string{r.GetContainerId(), r.GetExecId()}
	e.mu.Lock()
	defer e.mu.Unlock()
	prev := e.execs[key]
	first := deny(rule, "process_json.args", "matches no exec command of the policy")
	for i := range c.Exec {
		x := &c.Exec[i]
		if prev != nil && prev != x {
			continue
		}
		if len(x.Args) != len(p.Args) || !argsMatch(x.Args, p.Args) {
			continue
		}
		d := checkProcess(c, x, rule, "process_json", p)
		if d == nil && r.GetStdio().GetStdin() && !x.Stdin {
			d = deny(rule+".stdin", "stdio.stdin", "the policy gives this command no stdin")
		}
		if d == nil {
			r.Admit = func() error { return e.admitExec(key, c, x) }
			return nil
		}
		first = d
		break
	}
	return first
}

// admitExec records that process key, just started, runs under exec
// rule x of entry c, if its container is still admitted under c.
func (e *Evaluator) admitExec(key [2]string, c *Container, x *Exec) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.containers[key[0]] != c {
		return deny("containers["+c.Name+"]", "container_id", fmt.Sprintf("container %q is no longer admitted under this entry", key[0]))
	}
	e.execs[key] = x
	return nil
}

func argsMatch(ms []Match, args []string) bool {
	for i, a := range args {
		if !ms[i].Matches(a) {
			return false
		}
	}
	return true
}
