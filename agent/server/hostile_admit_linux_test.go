package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer/specconv"
	"google.golang.org/grpc/codes"

	agentv1 "confguest/agent/api/v1"
	"confguest/agent/attest"
	"confguest/agent/container"
	"confguest/agent/policy"
)

// admitScenario is an agent under a policy whose entries admit sleepSpec
// (sleep 30) on the busybox image: "a" with no output and no exec, and,
// in the policy that replaces it (or beside it), "b" with stdout and exec
// of id, which the host would like a container of "a" to run under. Only
// b admits bSpec (sleep 31).
type admitScenario struct {
	ta               *testAgent
	sleepSpec, bSpec []byte
	a, b             policy.Container
}

func newAdmitScenario(t *testing.T, cfg Config) *admitScenario {
	t.Helper()
	ta := startPolicyAgentWith(t, cfg)
	ex := specconv.Example()
	ex.Hostname = "confguest-test" // as the spec helper sends it
	sc := &admitScenario{ta: ta, sleepSpec: withCgroupNS(t, spec(t, false, "sleep", "30")), bSpec: withCgroupNS(t, spec(t, false, "sleep", "31"))}
	sc.a = entryFor("a", ta.image, ex, policy.Exactly("sleep", "30"))
	sc.b = entryFor("b", ta.image, ex, []policy.Match{{Exact: "sleep"}, {Pattern: "[0-9]+"}})
	sc.b.Stdout = true
	sc.b.Exec = []policy.Exec{{Args: policy.Exactly("id")}, {Args: policy.Exactly("sleep", "30")}}
	return sc
}

func (sc *admitScenario) install(t *testing.T, replaceable bool, entries ...policy.Container) error {
	t.Helper()
	doc := policyDoc(t, policy.Policy{Version: policy.Version, Agent: policy.AgentRules{ReplacePolicy: replaceable}, Containers: entries})
	_, err := sc.ta.client.SetPolicy(ctx(t), &agentv1.SetPolicyRequest{Policy: doc})
	return err
}

func (sc *admitScenario) createReq(id string, specJSON []byte) *agentv1.CreateContainerRequest {
	return &agentv1.CreateContainerRequest{ContainerId: id, SpecJson: specJSON,
		Rootfs: &agentv1.Rootfs{Source: &agentv1.Rootfs_GuestDirectory{GuestDirectory: sc.ta.image}}}
}

func (sc *admitScenario) run(t *testing.T, id string) error {
	t.Helper()
	if _, err := sc.ta.client.CreateContainer(ctx(t), sc.createReq(id, sc.sleepSpec)); err != nil {
		return fmt.Errorf("create %s: %w", id, err)
	}
	if _, err := sc.ta.client.StartContainer(ctx(t), &agentv1.StartContainerRequest{ContainerId: id}); err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	return nil
}

func (sc *admitScenario) exec(t *testing.T, cid, eid string, args ...string) error {
	t.Helper()
	_, err := sc.ta.client.ExecProcess(ctx(t), &agentv1.ExecProcessRequest{ContainerId: cid, ExecId: eid, ProcessJson: process(t, false, args...)})
	return err
}

// revoked runs container x under entry a, then replaces the policy by one
// with only entry b: x runs on, admitted under no entry.
func (sc *admitScenario) revoked(t *testing.T) {
	t.Helper()
	if err := sc.install(t, true, sc.a); err != nil {
		t.Fatal(err)
	}
	if err := sc.run(t, "x"); err != nil {
		t.Fatal(err)
	}
	if err := sc.install(t, false, sc.b); err != nil {
		t.Fatal(err)
	}
}

// rebindRevoked is the attack of point 3 on a revoked container: create
// on its ID (which the manager holds) with a spec entry b admits, then
// use what b allows.
func rebindRevoked(use func(t *testing.T, sc *admitScenario) error) func(t *testing.T) error {
	return func(t *testing.T) error {
		sc := newAdmitScenario(t, Config{Cmdline: "confguest.tee=none"})
		sc.revoked(t)
		if _, err := sc.ta.client.CreateContainer(ctx(t), sc.createReq("x", sc.bSpec)); code(err) != codes.AlreadyExists {
			t.Errorf("CreateContainer on the revoked container's ID = %v, want AlreadyExists", err)
		}
		return use(t, sc)
	}
}

// raceDelete is the attack of point 3 on a delete: while container x
// (entry a) is deleted, create x again with a padded spec (slow to
// transfer and decode, widening the gap between the policy check and the
// create), the two sent at offsets that sweep each other in 1 ms steps;
// wherever x then runs, create it under entry b and exec what b allows.
// Returns nil if any exec ran, otherwise the last exec's refusal.
func raceDelete(t *testing.T) error {
	sc := newAdmitScenario(t, Config{Cmdline: "confguest.tee=none"})
	if err := sc.install(t, false, sc.a, sc.b); err != nil {
		t.Fatal(err)
	}
	padded := append(bytes.TrimSuffix(sc.sleepSpec, []byte("}")), []byte(`,"x-padding":"`+strings.Repeat("p", 900<<10)+`"}`)...)
	del := func() error {
		_, err := sc.ta.client.DeleteContainer(ctx(t), &agentv1.DeleteContainerRequest{ContainerId: "x"})
		return err
	}
	after := func(d time.Duration, f func()) func() {
		return func() { time.Sleep(d); f() }
	}
	// Offsets of the create from the delete: a negative one sends it
	// first; the last comes after the delete, when x runs under a again.
	var offsets []time.Duration
	for ms := -25; ms <= 10; ms++ {
		offsets = append(offsets, time.Duration(ms)*time.Millisecond)
	}
	offsets = append(offsets, 300*time.Millisecond)
	var last error
	for i, off := range offsets {
		if err := sc.run(t, "x"); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		var createErr error
		create := func() { _, createErr = sc.ta.client.CreateContainer(ctx(t), sc.createReq("x", padded)) }
		deleteX := func() { del() } //nolint:errcheck // the race decides
		var wg sync.WaitGroup
		for _, f := range []func(){after(max(off, 0), create), after(max(-off, 0), deleteX)} {
			wg.Add(1)
			go func() { defer wg.Done(); f() }()
		}
		wg.Wait()
		if createErr == nil {
			// x holds a's spec again; the host now claims it for b, and
			// starts it under whichever entry it is bound to.
			sc.ta.client.CreateContainer(ctx(t), sc.createReq("x", sc.bSpec))                     //nolint:errcheck // refused either way
			sc.ta.client.StartContainer(ctx(t), &agentv1.StartContainerRequest{ContainerId: "x"}) //nolint:errcheck // as the binding allows
			if last = sc.exec(t, "x", fmt.Sprintf("e%d", i), "id"); last == nil {
				return nil
			}
		}
		del() //nolint:errcheck // absent when the create lost
	}
	if last == nil {
		return errors.New("no round left container x running after the race")
	}
	return last
}

// startFails runs the agent with cfg and returns the error it stops with
// before it is ready, or nil once it is ready.
func startFails(t *testing.T, cfg Config) error {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	cfg.Address, cfg.StateDir, cfg.EvidenceSocket = "unix:"+filepath.Join(dir, "agent.sock"), filepath.Join(dir, "state"), "-"
	cfg.Logger, cfg.Ready = slog.New(slog.NewTextHandler(io.Discard, nil)), func() { close(ready) }
	done := make(chan error, 1)
	go func() { done <- Run(ctx, withLibct(cfg)) }()
	select {
	case err := <-done:
		return err
	case <-ready:
		cancel()
		<-done
		return nil
	}
}

// badJSON creates container x with spec JSON the strict decoder refuses.
func badJSON(edit func(specJSON []byte) []byte) func(t *testing.T) error {
	return func(t *testing.T) error {
		sc := newAdmitScenario(t, Config{Cmdline: "confguest.tee=none"})
		if err := sc.install(t, false, sc.a); err != nil {
			t.Fatal(err)
		}
		_, err := sc.ta.client.CreateContainer(ctx(t), sc.createReq("x", edit(sc.sleepSpec)))
		return err
	}
}

// TestHostileAdmit runs the attacks of a host on admissions, the kernel
// command line, the spec decoding and the agent's resources (issue 14,
// points 3, 8, 9 and 10) against the real agent and libcontainer. Each
// must be refused, naming the policy rule or the limit.
func TestHostileAdmit(t *testing.T) {
	// A policy whose hash is not HOST_DATA of fakeSNP's device.
	unbound := []byte(`{"version":1}` + "\n")
	tests := []struct {
		name   string
		point  int
		attack func(t *testing.T) error // the refusal, or nil if the attack succeeded
		code   codes.Code               // of the refusal; OK for an error that is not a status (Run's)
		want   string
	}{
		// Point 3: bind a live container to another entry.
		{"exec in a revoked container by re-creating its ID", 3, rebindRevoked(func(t *testing.T, sc *admitScenario) error {
			return sc.exec(t, "x", "e", "id")
		}), codes.PermissionDenied, `container "x" was not admitted`},
		{"read a revoked container's output by re-creating its ID", 3, rebindRevoked(func(t *testing.T, sc *admitScenario) error {
			_, err := agentv1.CopyOutput(ctx(t), sc.ta.client, &agentv1.ProcessRef{ContainerId: "x"}, agentv1.OutputStream_OUTPUT_STREAM_STDOUT, io.Discard)
			return err
		}), codes.PermissionDenied, `container "x" was not admitted`},
		{"stop a revoked container gracefully", 3, rebindRevoked(func(t *testing.T, sc *admitScenario) error {
			_, err := sc.ta.client.SignalProcess(ctx(t), &agentv1.SignalProcessRequest{Process: &agentv1.ProcessRef{ContainerId: "x"}, Signal: 15})
			return err
		}), codes.PermissionDenied, `container "x" was not admitted`},
		{"create racing delete with a padded spec", 3, raceDelete, codes.PermissionDenied, "containers[a].exec"},
		{"create on an admitted ID", 3, func(t *testing.T) error {
			sc := newAdmitScenario(t, Config{Cmdline: "confguest.tee=none"})
			if err := sc.install(t, false, sc.a, sc.b); err != nil {
				t.Fatal(err)
			}
			if err := sc.run(t, "x"); err != nil {
				t.Fatal(err)
			}
			_, err := sc.ta.client.CreateContainer(ctx(t), sc.createReq("x", sc.sleepSpec))
			return err
		}, codes.PermissionDenied, `container "x" was admitted under this entry and exists`},

		// Point 8: the host edits the kernel command line.
		{"tee=none on an SEV-SNP guest", 8, func(t *testing.T) error {
			return startFails(t, Config{Cmdline: "console=ttyS0 confguest.tee=none", SNPDevice: func() (string, bool) { return "/dev/sev-guest", true }})
		}, codes.OK, "confguest.tee=none: confguest.tee=none on an SEV-SNP guest: this guest has an SEV-SNP device (/dev/sev-guest)"},
		{"tee given twice, none last", 8, func(t *testing.T) error {
			return startFails(t, Config{Cmdline: "confguest.tee=snp confguest.tee=none", SNPDevice: noSNPDevice})
		}, codes.OK, "confguest.tee given twice"},
		{"tee=none after --", 8, func(t *testing.T) error {
			ta := startPolicyAgentWith(t, Config{Cmdline: "console=ttyS0 -- confguest.tee=none", QuoteProvider: fakeSNP(t, []byte(`{"version":1,"agent":{}}`))})
			_, err := ta.client.SetPolicy(ctx(t), &agentv1.SetPolicyRequest{Policy: unbound})
			return err
		}, codes.PermissionDenied, "HOST_DATA"},
		{"unknown confguest key", 8, func(t *testing.T) error {
			return startFails(t, Config{Cmdline: "confguest.tee=none confguest.policy=permissive", SNPDevice: noSNPDevice})
		}, codes.OK, "unknown confguest parameter: confguest.policy"},

		// Point 9: a spec two decoders would read differently.
		{"duplicate key", 9, badJSON(func(s []byte) []byte {
			return append([]byte(`{"process":{"args":["/bin/sh"],"cwd":"/"},`), s[1:]...)
		}), codes.InvalidArgument, `spec_json: malformed request: not an OCI runtime spec: key "process" given twice`},
		{"duplicate key differing in case", 9, badJSON(func(s []byte) []byte {
			return append([]byte(`{"Process":{"args":["/bin/sh"],"cwd":"/"},`), s[1:]...)
		}), codes.InvalidArgument, `given twice in one object (keys are compared ignoring case)`},
		{"invalid UTF-8", 9, badJSON(func(s []byte) []byte {
			return bytes.Replace(s, []byte(`"confguest-test"`), []byte("\"confguest-\xfftest\""), 1)
		}), codes.InvalidArgument, "spec_json: malformed request: not an OCI runtime spec: not valid UTF-8"},
		{"a second document after the spec", 9, badJSON(func(s []byte) []byte {
			return append(append([]byte(nil), s...), `{"process":{"args":["/bin/sh"]}}`...)
		}), codes.InvalidArgument, "spec_json: malformed request"},
		{"exec process with duplicate args", 9, func(t *testing.T) error {
			sc := newAdmitScenario(t, Config{Cmdline: "confguest.tee=none"})
			if err := sc.install(t, false, sc.b); err != nil {
				t.Fatal(err)
			}
			if err := sc.run(t, "x"); err != nil {
				t.Fatal(err)
			}
			pj := append([]byte(`{"args":["/bin/sh","-c","reboot"],`), process(t, false, "id")[1:]...)
			_, err := sc.ta.client.ExecProcess(ctx(t), &agentv1.ExecProcessRequest{ContainerId: "x", ExecId: "e", ProcessJson: pj})
			return err
		}, codes.InvalidArgument, `process_json: malformed request: not an OCI process: key "args" given twice`},

		// Point 10: exhaust the guest.
		{"containers over the limit", 10, func(t *testing.T) error {
			sc := newAdmitScenario(t, Config{Cmdline: "confguest.tee=none", Containers: container.Config{Limits: container.Limits{Containers: 1}}})
			if err := sc.install(t, false, sc.a); err != nil {
				t.Fatal(err)
			}
			if err := sc.run(t, "x"); err != nil {
				t.Fatal(err)
			}
			return sc.run(t, "y")
		}, codes.ResourceExhausted, "the agent holds 1 containers, the limit is 1 (container.MaxContainers)"},
		{"exec'd processes over the limit", 10, func(t *testing.T) error {
			sc := newAdmitScenario(t, Config{Cmdline: "confguest.tee=none", Containers: container.Config{Limits: container.Limits{Execs: 2}}})
			if err := sc.install(t, false, sc.b); err != nil {
				t.Fatal(err)
			}
			if err := sc.run(t, "x"); err != nil {
				t.Fatal(err)
			}
			// Exited processes make room; running ones do not.
			for _, e := range []string{"id1", "id2", "id3"} {
				if err := sc.exec(t, "x", e, "id"); err != nil {
					t.Fatalf("exec %s = %v, want the exited ones dropped to make room", e, err)
				}
				sc.ta.wait(t, "x", e)
			}
			// The dropped process's admission went with it.
			if _, err := sc.ta.client.WaitProcess(ctx(t), &agentv1.WaitProcessRequest{Process: &agentv1.ProcessRef{ContainerId: "x", ExecId: "id1"}}); code(err) != codes.PermissionDenied {
				t.Errorf("WaitProcess(dropped id1) = %v, want PermissionDenied: its admission is forgotten", err)
			}
			for _, e := range []string{"s1", "s2"} {
				if err := sc.exec(t, "x", e, "sleep", "30"); err != nil {
					t.Fatalf("exec %s = %v", e, err)
				}
			}
			return sc.exec(t, "x", "s3", "sleep", "30")
		}, codes.ResourceExhausted, "2 processes run, the limit is 2 (container.MaxExecs)"},
		{"scratch over the limit", 10, func(t *testing.T) error {
			sc := newAdmitScenario(t, Config{Cmdline: "confguest.tee=none"})
			if err := sc.install(t, false, sc.a); err != nil {
				t.Fatal(err)
			}
			r := sc.createReq("x", sc.sleepSpec)
			r.Rootfs.ScratchBytes = container.MaxScratchBytes + 1
			_, err := sc.ta.client.CreateContainer(ctx(t), r)
			return err
		}, codes.ResourceExhausted, "rootfs.scratch_bytes: resource limit reached"},
		{"evidence connections over the limit", 10, func(t *testing.T) error {
			sc := newAdmitScenario(t, Config{Cmdline: "confguest.tee=none"})
			sock := filepath.Join(sc.ta.stateDir, "shared", filepath.Base(attest.SocketPath))
			for range 100 { // the endpoint starts beside the API server
				if _, err := os.Stat(sock); err == nil {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			var idle []net.Conn
			defer func() {
				for _, c := range idle {
					c.Close()
				}
			}()
			for range attest.MaxConnections {
				c, err := net.Dial("unix", sock)
				if err != nil {
					t.Fatal(err)
				}
				idle = append(idle, c)
			}
			// The endpoint takes connections in order: the idle ones
			// hold every slot.
			time.Sleep(100 * time.Millisecond)
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
			got, _ := io.ReadAll(c)
			if !bytes.HasPrefix(got, []byte("HTTP/1.1 429 ")) {
				return nil
			}
			return errors.New(string(got))
		}, codes.OK, "the limit is 16 (attest.MaxConnections)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.attack(t)
			if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.code != codes.OK && code(err) != tc.code) {
				t.Fatalf("point %d attack %q = %v, want a refusal (%v) naming %q", tc.point, tc.name, err, tc.code, tc.want)
			}
		})
	}
}

// TestRevokedContainerCanBeRemoved checks that a pod can always be torn
// down: SIGKILL and DeleteContainer of a container whose policy entry a
// replacement dropped succeed (they only remove), and leave nothing.
func TestRevokedContainerCanBeRemoved(t *testing.T) {
	sc := newAdmitScenario(t, Config{Cmdline: "confguest.tee=none"})
	sc.revoked(t)
	st, err := sc.ta.client.ListContainers(ctx(t), &agentv1.ListContainersRequest{})
	if err != nil || len(st.GetContainers()) != 1 {
		t.Fatalf("ListContainers = %v, %v, want x", st, err)
	}
	pid := st.GetContainers()[0].GetPid()
	if _, err := sc.ta.client.SignalProcess(ctx(t), &agentv1.SignalProcessRequest{Process: &agentv1.ProcessRef{ContainerId: "x"}, Signal: 9, All: true}); err != nil {
		t.Errorf("SIGKILL to revoked container x = %v, want it killed", err)
	}
	if _, err := sc.ta.client.DeleteContainer(ctx(t), &agentv1.DeleteContainerRequest{ContainerId: "x"}); err != nil {
		t.Fatalf("DeleteContainer(revoked x) = %v, want it deleted", err)
	}
	if left := leftovers(t, sc.ta.stateDir, "x", pid); len(left) > 0 {
		t.Errorf("deleting revoked container x left %q", left)
	}
	// The ID is free again, for the entry in force.
	if err := sc.run(t, "x"); err != nil {
		t.Errorf("re-creating x under entry b after the delete = %v", err)
	}
	if err := sc.exec(t, "x", "e", "id"); err != nil {
		t.Errorf("exec in the new x under entry b = %v", err)
	}
}
