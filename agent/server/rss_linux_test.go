package server

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/ttrpc"

	agentv1 "confguest/agent/api/v1"
	"confguest/agent/container"
	"confguest/build/guestimage"
)

// BenchmarkAgentRSS builds the static agent, runs it on a unix socket and
// reports its resident memory idle and after b.N create/start/wait/delete
// cycles of `true` (use -benchtime 100x for the figure).
//
//	go test -run '^$' -bench BenchmarkAgentRSS -benchtime 100x ./agent/server
func BenchmarkAgentRSS(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	dir := b.TempDir()
	bin := filepath.Join(dir, "agent")
	if err := guestimage.BuildAgent(context.Background(), filepath.Join("..", ".."), bin); err != nil {
		b.Fatalf("build agent: %v", err)
	}
	helper := filepath.Join(dir, "libct")
	if err := guestimage.BuildLibct(context.Background(), filepath.Join("..", ".."), helper); err != nil {
		b.Fatalf("build the agent's helper: %v", err)
	}
	image := busyboxImage(b, dir)
	sock := filepath.Join(dir, "agent.sock")
	cmd := exec.Command(bin, "-listen", "unix:"+sock, "-state", filepath.Join(dir, "state"), "-poweroff=false", "-image-dir", image, "-libct", helper)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "confguest-agent: ready\n" {
		b.Fatalf("agent printed %q, %v; want the ready line", line, err)
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	raw := ttrpc.NewClient(conn)
	defer raw.Close()
	c := agentv1.NewAgentClient(raw)
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := c.Version(cctx, &agentv1.VersionRequest{}); err != nil {
		b.Fatal(err)
	}
	idle := rssKiB(b, cmd.Process.Pid, "VmRSS:")
	idleAnon := rssKiB(b, cmd.Process.Pid, "RssAnon:")
	idleThreads := rssKiB(b, cmd.Process.Pid, "Threads:")
	s := spec(b, false, "true")
	rootfs := &agentv1.Rootfs{Source: &agentv1.Rootfs_GuestDirectory{GuestDirectory: image}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := "r" + strconv.Itoa(i)
		if _, err := c.CreateContainer(cctx, &agentv1.CreateContainerRequest{ContainerId: id, SpecJson: s, Rootfs: rootfs}); err != nil {
			b.Fatal(err)
		}
		if _, err := c.StartContainer(cctx, &agentv1.StartContainerRequest{ContainerId: id}); err != nil {
			b.Fatal(err)
		}
		if _, err := c.WaitProcess(cctx, &agentv1.WaitProcessRequest{Process: &agentv1.ProcessRef{ContainerId: id}}); err != nil {
			b.Fatal(err)
		}
		if _, err := c.DeleteContainer(cctx, &agentv1.DeleteContainerRequest{ContainerId: id}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	time.Sleep(container.IdleRelease + 500*time.Millisecond) // idle again
	after := rssKiB(b, cmd.Process.Pid, "VmRSS:")
	afterAnon := rssKiB(b, cmd.Process.Pid, "RssAnon:")
	b.ReportMetric(float64(idleThreads), "idle-threads")
	b.ReportMetric(float64(rssKiB(b, cmd.Process.Pid, "Threads:")), "after-threads")
	b.ReportMetric(float64(idleAnon)/1024, "idle-anon-MiB")
	b.ReportMetric(float64(afterAnon)/1024, "after-anon-MiB")
	b.ReportMetric(float64(idle)/1024, "idle-RSS-MiB")
	b.ReportMetric(float64(after)/1024, "after-RSS-MiB")
	b.ReportMetric(100*float64(after-idle)/float64(idle), "growth-%")
}

// rssKiB reads a kB field (VmRSS:, RssAnon:, RssFile:) of /proc/pid/status.
func rssKiB(b *testing.B, pid int, field string) int {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, field); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
