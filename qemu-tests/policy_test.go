package qemutests

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"confguest/agent/api/policy"
	agentv1 "confguest/agent/api/v1"
	"confguest/hostside/image"
	"confguest/hostside/launcher"
)

// evidenceClient is a workload that asks the attestation endpoint for evidence over its
// unix socket (busybox has no unix-socket client) and prints the raw HTTP answer. As
// "evidence vsock" it tries the agent's API port (vsock 1024) from inside the guest, through
// VMADDR_CID_LOCAL (1) and the guest's own context ID (3, the launcher's default), and says
// for each whether a ttrpc request got an answer: vsock has no network namespaces, and with
// its loopback transport a container could reach the port if the agent took connections
// from anyone but the host.
const evidenceClient = `package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "vsock" {
		for _, cid := range []uint32{1, 3} {
			fmt.Printf("vsock %d: %s\n", cid, probe(cid))
		}
		return
	}
	c, err := net.Dial("unix", "/run/confguest/attestation.sock")
	if err != nil {
		fmt.Println("evidence: dial:", err)
		os.Exit(1)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprint(c, "GET /v1/evidence?runtime_data=bm9uY2U HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
	io.Copy(os.Stdout, c)
}

// probe connects to vsock cid:1024, sends a ttrpc request (service "x", method "y") and
// reads for 10 s.
func probe(cid uint32) string {
	fd, err := syscall.Socket(40, syscall.SOCK_STREAM, 0) // AF_VSOCK
	if err != nil {
		return "no socket: " + err.Error()
	}
	defer syscall.Close(fd)
	var sa [16]byte // struct sockaddr_vm
	binary.LittleEndian.PutUint16(sa[0:], 40)
	binary.LittleEndian.PutUint32(sa[4:], 1024)
	binary.LittleEndian.PutUint32(sa[8:], cid)
	if _, _, e := syscall.Syscall(syscall.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa[0])), 16); e != 0 {
		return "no answer (connect: " + e.Error() + ")"
	}
	payload := []byte{0x0a, 0x01, 'x', 0x12, 0x01, 'y'}
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(payload)))
	frame = binary.BigEndian.AppendUint32(frame, 1)
	frame = append(append(frame, 1, 0), payload...)
	syscall.Write(fd, frame)
	tv := syscall.NsecToTimeval(int64(10 * time.Second))
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	buf := make([]byte, 64)
	n, err := syscall.Read(fd, buf)
	switch {
	case n > 0:
		return fmt.Sprintf("answered (%d bytes)", n)
	case err != nil:
		return "no answer (read: " + err.Error() + ")"
	}
	return "no answer (closed)"
}
`

// buildEvidenceClient compiles evidenceClient statically into dir/bin/evidence.
func buildEvidenceClient(t *testing.T, dir string) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "evidence.go")
	if err := os.WriteFile(src, []byte(evidenceClient), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(dir, "bin", "evidence"), src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the evidence client: %v\n%s", err, out)
	}
}

// TestPolicyInGuest boots the real guest (confguest.tee=none) and checks that its agent
// obeys the measured policy only: nothing before SetPolicy; a policy that allows container
// A only; B, on a disk with another verity root hash, is denied; an exec the policy does not
// list is denied naming the rule, a listed one runs; a denied stdout read returns no data
// while A writes 4 MB to it and runs to completion; the attestation endpoint, bind-mounted
// into A, and GetReport before the policy both answer "no SEV-SNP device"; GetReport under
// the policy (no agent.get_report) is denied naming the rule; the container cannot reach the
// agent's API over vsock from inside the guest.
func TestPolicyInGuest(t *testing.T) {
	img := needImage(t)
	if _, err := exec.LookPath("mkfs.erofs"); err != nil {
		missing(t, "mkfs.erofs not found: install erofs-utils (build/setup.sh)")
	}
	rootA, rootB := busyboxRoot(t), busyboxRoot(t)
	for _, app := range []string{"yes", "head", "test", "touch"} {
		os.Symlink("busybox", filepath.Join(rootA, "bin", app))
	}
	buildEvidenceClient(t, rootA)
	// B differs from A by one file: another disk, another verity root hash.
	if err := os.WriteFile(filepath.Join(rootB, "etc", "b"), []byte("not in the policy\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	sb := newSandbox(ctx, t, img, 512)
	diskA, err := sb.BuildDisk(ctx, image.Source{Kind: image.Dir, Ref: rootA})
	if err != nil {
		t.Fatalf("BuildDisk(A): %v", err)
	}
	diskB, err := sb.BuildDisk(ctx, image.Source{Kind: image.Dir, Ref: rootB})
	if err != nil {
		t.Fatalf("BuildDisk(B): %v", err)
	}
	if diskA.Verity.RootHash == diskB.Verity.RootHash {
		t.Fatalf("disks A and B have the same verity root hash %s", diskA.Verity.RootHash)
	}

	const script = `test -S /run/confguest/attestation.sock && echo socket present >&2
evidence >&2
evidence vsock >&2
yes confguest | head -c 4000000
echo wrote 4000000 bytes >&2
while ! test -e /tmp/go; do sleep 1; done
echo done >&2`
	procA := launcher.Process{Args: []string{"sh", "-c", script}, Cwd: "/", Env: []string{"PATH=/bin"}}
	touch := launcher.Process{Args: []string{"touch", "/tmp/go"}, Cwd: "/", Env: []string{"PATH=/bin"}}
	entry := launcher.PolicyEntry("a", diskA.Verity.RootHash, launcher.ContainerSpec(procA, "a"))
	entry.Stdout, entry.Attestation = false, true
	entry.Exec = []policy.Exec{launcher.ExecRule(touch)}
	doc, err := json.Marshal(policy.Policy{Version: policy.Version, Agent: policy.AgentRules{Shutdown: true},
		Containers: []policy.Container{entry}})
	if err != nil {
		t.Fatal(err)
	}
	// Booted without its policy, which SetPolicy installs below (HOST_DATA is not checked
	// without SEV-SNP).
	g, err := sb.Boot(ctx, nil)
	if err != nil {
		t.Fatalf("Boot: %v", err)
	}
	a := g.Agent()
	specA := launcher.ContainerSpec(procA, "a")

	denied := func(what string, err error, want ...string) {
		t.Helper()
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s = %v, want PermissionDenied", what, err)
			return
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s = %v, want it to name %q", what, err, w)
			}
		}
	}

	// The guest requires a policy: before SetPolicy, nothing but Version, GetReport and SetPolicy.
	_, err = g.CreateContainer(ctx, "a", diskA, specA, launcher.Stdio{})
	denied("CreateContainer before SetPolicy", errors.Unwrap(err), "no policy installed", "SetPolicy")
	_, err = a.GetReport(ctx, &agentv1.GetReportRequest{ReportData: []byte("nonce")})
	if err == nil || !strings.Contains(err.Error(), "no SEV-SNP device") {
		t.Errorf("GetReport before SetPolicy = %v, want a no SEV-SNP device error", err)
	}
	if err := g.SetPolicy(ctx, doc); err != nil {
		t.Fatalf("SetPolicy: %v", err)
	}
	if v, err := a.Version(ctx, &agentv1.VersionRequest{}); err != nil || v.GetTee() != "none" {
		t.Errorf("Version = %v, %v, want tee none", v, err)
	}
	_, err = a.SetPolicy(ctx, &agentv1.SetPolicyRequest{Policy: doc})
	denied("a second SetPolicy", err, "agent.replace_policy")
	// The policy has no agent.get_report: the host gets no report.
	_, err = a.GetReport(ctx, &agentv1.GetReportRequest{ReportData: []byte("nonce")})
	denied("GetReport under the policy", err, "agent.get_report")

	_, err = g.CreateContainer(ctx, "b", diskB, launcher.ContainerSpec(procA, "b"), launcher.Stdio{})
	denied("CreateContainer(B)", errors.Unwrap(err), "denied by policy rule containers: rootfs", strings.ToLower(diskB.Verity.RootHash))
	if _, err := g.CreateContainer(ctx, "a", diskA, specA, launcher.Stdio{}); err != nil {
		t.Fatalf("CreateContainer(A): %v", err)
	}
	ref := &agentv1.ProcessRef{ContainerId: "a"}
	// stderr is allowed: read it all while A runs.
	var stderr strings.Builder
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		st, err := a.ReadOutput(ctx)
		if err != nil {
			t.Errorf("ReadOutput(stderr): %v", err)
			return
		}
		st.Send(&agentv1.ReadOutputRequest{Process: ref, Stream: agentv1.OutputStream_OUTPUT_STREAM_STDERR, Credit: 64})
		for n := 1; ; n++ {
			c, err := st.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					t.Errorf("ReadOutput(stderr): %v", err)
				}
				return
			}
			stderr.Write(c.GetData())
			if c.GetEof() {
				return
			}
			if n%32 == 0 {
				st.Send(&agentv1.ReadOutputRequest{Credit: 32})
			}
		}
	}()
	if _, err := a.StartContainer(ctx, &agentv1.StartContainerRequest{ContainerId: "a"}); err != nil {
		t.Fatalf("StartContainer(A): %v", err)
	}

	// stdout is not: the read is refused with no data, and A keeps writing.
	st, err := a.ReadOutput(ctx)
	if err != nil {
		t.Fatalf("ReadOutput(stdout): %v", err)
	}
	st.Send(&agentv1.ReadOutputRequest{Process: ref, Stream: agentv1.OutputStream_OUTPUT_STREAM_STDOUT, Credit: 64})
	var got int
	for {
		c, err := st.Recv()
		if err != nil {
			denied("ReadOutput(stdout)", err, "containers[a].stdout")
			break
		}
		got += len(c.GetData())
	}
	if got != 0 {
		t.Errorf("denied ReadOutput(stdout) returned %d bytes, want none", got)
	}

	// Exec: raw calls, as the entry's stdout rule covers exec'd processes too.
	execReq := func(id string, p launcher.Process) *agentv1.ExecProcessRequest {
		pj, err := json.Marshal(launcher.ContainerSpec(p, "a").Process)
		if err != nil {
			t.Fatal(err)
		}
		return &agentv1.ExecProcessRequest{ContainerId: "a", ExecId: id, ProcessJson: pj}
	}
	_, err = a.ExecProcess(ctx, execReq("cat", launcher.Process{Args: []string{"cat", "/etc/hello"}, Cwd: "/", Env: []string{"PATH=/bin"}}))
	denied("ExecProcess(cat /etc/hello)", err, "denied by policy rule containers[a].exec", "matches no exec command of the policy")
	if _, err := a.ExecProcess(ctx, execReq("touch", touch)); err != nil {
		t.Fatalf("ExecProcess(touch /tmp/go), listed in the policy: %v", err)
	}
	if w, err := a.WaitProcess(ctx, &agentv1.WaitProcessRequest{Process: &agentv1.ProcessRef{ContainerId: "a", ExecId: "touch"}}); err != nil || w.GetExitCode() != 0 {
		t.Fatalf("WaitProcess(touch /tmp/go) = %v, %v, want exit 0", w, err)
	}
	w, err := a.WaitProcess(ctx, &agentv1.WaitProcessRequest{Process: ref})
	if err != nil || w.GetExitCode() != 0 {
		t.Errorf("WaitProcess(A) = %v, %v, want exit 0: A ran to completion", w, err)
	}
	wg.Wait()
	out := stderr.String()
	t.Logf("A's stderr (stdout unread):\n%s", out)
	for _, want := range []string{"socket present", "503", "no SEV-SNP device", "vsock 1: no answer", "vsock 3: no answer", "wrote 4000000 bytes", "done"} {
		if !strings.Contains(out, want) {
			t.Errorf("A's stderr = %q, want it to contain %q", out, want)
		}
	}
	// The agent's API takes the host's connections only (agent/listen.Vsock).
	if strings.Contains(out, "answered") {
		t.Errorf("a container reached the agent's API over vsock from inside the guest: %q", out)
	}
	if _, err := a.DeleteContainer(ctx, &agentv1.DeleteContainerRequest{ContainerId: "a"}); err != nil {
		t.Errorf("DeleteContainer(A): %v", err)
	}
}
