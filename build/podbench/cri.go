package podbench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// criClient talks to containerd's CRI as the kubelet does (gRPC on its socket), so that
// the times measured hold no client start-up.
type criClient struct {
	conn    *grpc.ClientConn
	runtime runtimeapi.RuntimeServiceClient
	images  runtimeapi.ImageServiceClient
}

// dialCRI connects to endpoint (unix:///path).
func dialCRI(endpoint string) (*criClient, error) {
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("connect to the CRI at %s: %w", endpoint, err)
	}
	return &criClient{conn: conn, runtime: runtimeapi.NewRuntimeServiceClient(conn), images: runtimeapi.NewImageServiceClient(conn)}, nil
}

func (c *criClient) close() error { return c.conn.Close() }

// pull pulls ref through the CRI (containerd unpacks it into a snapshot).
func (c *criClient) pull(ctx context.Context, ref string) error {
	if _, err := c.images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	return nil
}

// podStart is one pod started by startPod: its IDs and when each step ended.
type podStart struct {
	pod, container string
	runp           time.Duration // RunPodSandbox
	create         time.Duration // CreateContainer
	start          time.Duration // StartContainer
	output         time.Duration // from StartContainer's return to the first output line
	logOffset      int64         // the containerd log's size before RunPodSandbox
}

// total is RunPodSandbox to the first output line.
func (p podStart) total() time.Duration { return p.runp + p.create + p.start + p.output }

// readyLine is what the benchmark's containers print first.
const readyLine = "pod up"

// startPod runs a pod named name under the runtime handler with one container of image
// that prints readyLine and then sleeps, and waits for that line in the container's log.
// The pod's logs go under logRoot/name. The time of the first output is containerd's
// timestamp of the log line (when it received the output), not when this poll saw it.
func (c *criClient) startPod(ctx context.Context, handler, name, image, logRoot string) (p podStart, err error) {
	logDir := filepath.Join(logRoot, name)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return p, err
	}
	podCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "podbench", Uid: "uid-" + name},
		Hostname:     name,
		LogDirectory: logDir,
		Linux:        &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{}},
	}
	ctrCfg := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "main"},
		Image:    &runtimeapi.ImageSpec{Image: image},
		Command:  []string{"sh", "-c", "echo " + readyLine + "; exec sleep 100000"},
		LogPath:  "main.log",
		Linux:    &runtimeapi.LinuxContainerConfig{},
	}
	began := time.Now()
	rp, err := c.runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg, RuntimeHandler: handler})
	if err != nil {
		return p, fmt.Errorf("pod %s (%s): RunPodSandbox: %w", name, handler, err)
	}
	p.pod = rp.PodSandboxId
	ran := time.Now()
	p.runp = ran.Sub(began)
	cr, err := c.runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: p.pod, Config: ctrCfg, SandboxConfig: podCfg})
	if err != nil {
		return p, fmt.Errorf("pod %s (%s): CreateContainer: %w", name, handler, err)
	}
	p.container = cr.ContainerId
	created := time.Now()
	p.create = created.Sub(ran)
	if _, err := c.runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: p.container}); err != nil {
		return p, fmt.Errorf("pod %s (%s): StartContainer: %w", name, handler, err)
	}
	started := time.Now()
	p.start = started.Sub(created)
	logPath := filepath.Join(logDir, ctrCfg.LogPath)
	for {
		at, err := firstLogLine(logPath)
		switch {
		case err == nil:
			// The line may have come before StartContainer returned.
			p.output = max(at.Sub(started), 0)
			if at.Before(started) {
				p.start = max(at.Sub(created), 0)
			}
			return p, nil
		case !errors.Is(err, errNoLine):
			return p, fmt.Errorf("pod %s (%s): %w", name, handler, err)
		}
		select {
		case <-ctx.Done():
			return p, fmt.Errorf("pod %s (%s): no output in %s: %w", name, handler, logPath, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// errNoLine: the log has no complete line yet.
var errNoLine = errors.New("no log line yet")

// firstLogLine returns containerd's timestamp of the first line of the CRI log at path
// ("<RFC 3339 time> stdout F <text>"), which must be readyLine.
func firstLogLine(path string) (time.Time, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return time.Time{}, errNoLine
	}
	if err != nil {
		return time.Time{}, err
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil {
		return time.Time{}, errNoLine
	}
	return parseCRILogLine(strings.TrimSuffix(line, "\n"))
}

// parseCRILogLine parses one line of a CRI container log whose text must be readyLine.
func parseCRILogLine(line string) (time.Time, error) {
	f := strings.SplitN(line, " ", 4)
	if len(f) != 4 {
		return time.Time{}, fmt.Errorf("container log line %q: want <time> <stream> <tag> <text>", line)
	}
	at, err := time.Parse(time.RFC3339Nano, f[0])
	if err != nil {
		return time.Time{}, fmt.Errorf("container log line %q: %w", line, err)
	}
	if f[3] != readyLine {
		return time.Time{}, fmt.Errorf("container log line %q: the container printed something else first, want %q", line, readyLine)
	}
	return at, nil
}

// removePod stops and removes pod (the runtime's VM or processes go with it).
func (c *criClient) removePod(ctx context.Context, pod string) error {
	if _, err := c.runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
		return fmt.Errorf("StopPodSandbox %s: %w", pod, err)
	}
	if _, err := c.runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
		return fmt.Errorf("RemovePodSandbox %s: %w", pod, err)
	}
	return nil
}
