package policy

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"

	"confguest/agent/authz"
	"confguest/agent/request"
)

// HostDataSource returns the HOST_DATA field of a fresh SEV-SNP report
// (package attest implements it with the guest's SEV-SNP device).
type HostDataSource interface {
	HostData(ctx context.Context) ([32]byte, error)
}

// Gate is the agent's authorizer under a measured policy. Until a policy
// is installed it answers only Version, GetReport and SetPolicy. Install
// binds the first policy: its SHA-256 must equal HOST_DATA from a fresh
// report, or the gate refuses every request from then on. Without a
// HostDataSource (a guest booted with confguest.tee=none) the policy is
// installed unbound.
type Gate struct {
	src HostDataSource
	log *slog.Logger

	mu       sync.RWMutex
	ev       *Evaluator
	hash     string // hex SHA-256 of the installed policy
	poisoned error
}

// NewGate returns a gate with no policy. src nil means no TEE: policies
// are accepted unbound.
func NewGate(src HostDataSource, log *slog.Logger) *Gate {
	if log == nil {
		log = slog.Default()
	}
	return &Gate{src: src, log: log}
}

var _ authz.Authorizer = (*Gate)(nil)

// Authorize decides on one request and logs refusals (and, at debug
// level, admissions) with the rule that decided.
func (g *Gate) Authorize(ctx context.Context, method string, req any) error {
	err := g.authorize(ctx, method, req)
	if err != nil {
		g.log.LogAttrs(ctx, slog.LevelWarn, "authorize", slog.String("method", method), slog.String("decision", "deny"), slog.String("reason", err.Error()))
		return err
	}
	g.log.LogAttrs(ctx, slog.LevelDebug, "authorize", slog.String("method", method), slog.String("decision", "allow"))
	return nil
}

func (g *Gate) authorize(ctx context.Context, method string, req any) error {
	// Held while the evaluator decides, so that Install carries over every
	// admission the old policy made: none lands in it after the swap.
	g.mu.RLock()
	defer g.mu.RUnlock()
	switch {
	case g.poisoned != nil:
		return fmt.Errorf("%s: %w (%w): %w", method, ErrPoisoned, g.poisoned, authz.ErrDenied)
	case g.ev == nil:
		switch method {
		case MethodVersion, MethodGetReport, MethodSetPolicy:
			return nil
		}
		return fmt.Errorf("%s: %w: call SetPolicy first: %w", method, ErrNoPolicy, authz.ErrDenied)
	}
	ev := g.ev
	if err := ev.Authorize(ctx, method, req); err != nil {
		return err
	}
	// An admission lands under the gate's lock, so that a replacement
	// between the check and the admission cannot lose it, and only in the
	// evaluator that checked it.
	guard := func(admit func() error) func() error {
		return func() error {
			g.mu.RLock()
			defer g.mu.RUnlock()
			if g.ev != ev {
				return deny("agent.replace_policy", method, "the policy was replaced while the call ran: send it again")
			}
			return admit()
		}
	}
	switch r := req.(type) {
	case *request.CreateContainer:
		if r.Admit != nil {
			r.Admit = guard(r.Admit)
		}
	case *request.ExecProcess:
		if r.Admit != nil {
			r.Admit = guard(r.Admit)
		}
	}
	return nil
}

// Install parses doc and makes it the policy. The first policy must be
// bound (SHA-256(doc) == HOST_DATA) unless the gate has no
// HostDataSource; a mismatch poisons the gate. A later policy replaces
// the current one only if the current one allows it (agent.replace_policy).
// A container admitted under the old policy continues under the new
// policy's entry of the same name (see carryAdmissions); without one it is
// no longer reachable, which is how a replacement revokes it.
func (g *Gate) Install(ctx context.Context, doc []byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.poisoned != nil {
		return fmt.Errorf("set policy: %w (%w): %w", ErrPoisoned, g.poisoned, authz.ErrDenied)
	}
	if g.ev != nil && !g.ev.p.Agent.ReplacePolicy {
		return deny("agent.replace_policy", "SetPolicy", "the installed policy does not allow replacing it")
	}
	p, err := Parse(doc)
	if err != nil {
		return err
	}
	hash := HashHex(doc)
	switch {
	case g.ev != nil:
		g.log.LogAttrs(ctx, slog.LevelWarn, "policy replaced", slog.String("old_sha256", g.hash), slog.String("sha256", hash))
	case g.src == nil:
		g.log.LogAttrs(ctx, slog.LevelWarn, "policy installed unbound (confguest.tee=none)", slog.String("sha256", hash))
	default:
		hd, err := g.src.HostData(ctx)
		if err != nil {
			return fmt.Errorf("set policy: read HOST_DATA: %w", err)
		}
		if got := hex.EncodeToString(hd[:]); got != hash {
			g.poisoned = fmt.Errorf("policy sha256 %s, HOST_DATA %s: %w", hash, got, ErrNotBound)
			g.log.LogAttrs(ctx, slog.LevelError, "policy binding failed: refusing every request", slog.String("sha256", hash), slog.String("host_data", got))
			return fmt.Errorf("set policy: %w: launch the VM with host_data = confguest policy hash of this policy: %w", g.poisoned, authz.ErrDenied)
		}
		g.log.LogAttrs(ctx, slog.LevelInfo, "policy installed, bound to HOST_DATA", slog.String("sha256", hash))
	}
	ev := NewEvaluator(p)
	if g.ev != nil {
		carryAdmissions(g.ev, ev)
	}
	g.ev, g.hash = ev, hash
	return nil
}

// carryAdmissions moves the admissions of from (the replaced policy's
// evaluator) to to: a container continues under to's entry of the same
// name, and each of its exec'd processes under that entry's first exec
// rule that reads the same as the rule that admitted it. A container or
// process with no such counterpart stays unadmitted: every call on it is
// denied until the container is deleted. to must not be in use yet.
func carryAdmissions(from, to *Evaluator) {
	byName := map[string]*Container{}
	for i := range to.p.Containers {
		byName[to.p.Containers[i].Name] = &to.p.Containers[i]
	}
	from.mu.Lock()
	defer from.mu.Unlock()
	for id, c := range from.containers {
		if nc, ok := byName[c.Name]; ok {
			to.containers[id] = nc
		}
	}
	for k, x := range from.execs {
		nc, ok := to.containers[k[0]]
		if !ok {
			continue
		}
		if nx := sameExec(nc.Exec, x); nx != nil {
			to.execs[k] = nx
		}
	}
}

// sameExec returns the first rule of rules that reads (as JSON) the same
// as x, or nil.
func sameExec(rules []Exec, x *Exec) *Exec {
	want, err := json.Marshal(x)
	if err != nil {
		return nil
	}
	for i := range rules {
		if got, err := json.Marshal(&rules[i]); err == nil && bytes.Equal(got, want) {
			return &rules[i]
		}
	}
	return nil
}

// Installed returns the hex SHA-256 of the installed policy, or "" and
// false.
func (g *Gate) Installed() (string, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.hash, g.ev != nil
}

// Forget drops the admission of a container being deleted, so its ID can
// be reused under any entry. The agent calls it before the container
// manager frees the ID: until then a create on the ID fails in the
// manager, and no create can bind the live container to another entry.
func (g *Gate) Forget(containerID string) {
	g.mu.RLock()
	ev := g.ev
	g.mu.RUnlock()
	if ev != nil {
		ev.Forget(containerID)
	}
}

// ForgetExec drops the admission of an exec'd process the agent dropped
// (it exited and made room for another), so that admissions stay as
// bounded as the processes.
func (g *Gate) ForgetExec(containerID, execID string) {
	g.mu.RLock()
	ev := g.ev
	g.mu.RUnlock()
	if ev != nil {
		ev.ForgetExec(containerID, execID)
	}
}

// Admitted returns the policy entry that admitted container id (for
// example to decide whether it gets the attestation endpoint).
func (g *Gate) Admitted(containerID string) (Container, bool) {
	g.mu.RLock()
	ev := g.ev
	g.mu.RUnlock()
	if ev == nil {
		return Container{}, false
	}
	c, d := ev.container(containerID)
	if d != nil {
		return Container{}, false
	}
	return *c, true
}
