package launcher

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	agentv1 "confguest/agent/api/v1"
	"confguest/hostside/image/imagetest"
	"confguest/hostside/vmm"
)

// The test binary stands in for QEMU and vhost-device-vsock.
const (
	// fakeVMMEnv set to 1 makes the test binary a fake vhost-device-vsock when its first
	// argument is --vm (vmm.StartQEMU starts that first), a fake QEMU otherwise.
	fakeVMMEnv = "CONFGUEST_TEST_FAKE_VMM"
	// fakeBootsEnv is a file the fake vhost-device-vsock appends a line to on every start.
	fakeBootsEnv = "CONFGUEST_TEST_BOOTS"
	// fakeWedgedEnv is how many boots leave every CONNECT unanswered.
	fakeWedgedEnv = "CONFGUEST_TEST_WEDGED_BOOTS"
	// fakeAgentEnv is the unix socket of the agent that answered CONNECTs reach.
	fakeAgentEnv = "CONFGUEST_TEST_AGENT"
)

func TestMain(m *testing.M) {
	if os.Getenv(fakeVMMEnv) == "1" {
		if len(os.Args) > 1 && os.Args[1] == "--vm" {
			os.Exit(runFakeVhost(os.Args[1:]))
		}
		os.Exit(runFakeQEMU(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// runFakeQEMU takes QEMU's command line as vmm.StartQEMU writes it, listens on the QMP
// socket, prints the agent's ready line on the serial console file and runs until killed.
func runFakeQEMU(args []string) int {
	var console, qmp string
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-serial":
			console = strings.TrimPrefix(args[i+1], "file:")
		case "-qmp":
			qmp, _, _ = strings.Cut(strings.TrimPrefix(args[i+1], "unix:"), ",")
		}
	}
	if console == "" || qmp == "" {
		fmt.Fprintf(os.Stderr, "fake qemu: no -serial file: or -qmp unix: in %q\n", args)
		return 2
	}
	if err := os.WriteFile(console, []byte("confguest-init: root verified 00\n"+agentReadyMarker+"\n"), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, "fake qemu:", err)
		return 1
	}
	// No QMP: the launcher's power-off fails fast and it kills the VM.
	return serveUntilSignalled("fake qemu", map[string]func(net.Conn){qmp: func(c net.Conn) { c.Close() }})
}

// serveUntilSignalled listens on each unix socket path and hands every connection to its
// function, until SIGTERM or SIGINT. It returns the fake's exit status.
func serveUntilSignalled(who string, serve map[string]func(net.Conn)) int {
	for path, fn := range serve {
		ln, err := net.Listen("unix", path)
		if err != nil {
			fmt.Fprintln(os.Stderr, who+":", err)
			return 1
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go fn(c)
			}
		}()
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	return 0
}

// runFakeVhost takes vhost-device-vsock's command line, creates its vhost-user socket and
// serves hybrid vsock on uds-path: on the first $CONFGUEST_TEST_WEDGED_BOOTS starts it
// reads each CONNECT and never answers (the wedge the launcher recovers from); after that
// it answers "OK" and joins the connection to the agent at $CONFGUEST_TEST_AGENT.
func runFakeVhost(args []string) int {
	if len(args) != 2 || args[0] != "--vm" {
		fmt.Fprintf(os.Stderr, "fake vhost-device-vsock: unexpected arguments %q\n", args)
		return 2
	}
	opts := map[string]string{}
	for _, kv := range strings.Split(args[1], ",") {
		k, v, _ := strings.Cut(kv, "=")
		opts[k] = v
	}
	f, err := os.OpenFile(os.Getenv(fakeBootsEnv), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake vhost-device-vsock:", err)
		return 1
	}
	fmt.Fprintln(f, "boot")
	f.Close()
	b, _ := os.ReadFile(os.Getenv(fakeBootsEnv))
	wedgedBoots, _ := strconv.Atoi(os.Getenv(fakeWedgedEnv))
	wedged := bytes.Count(b, []byte("\n")) <= wedgedBoots

	return serveUntilSignalled("fake vhost-device-vsock", map[string]func(net.Conn){
		opts["socket"]:   func(c net.Conn) { c.Close() }, // StartQEMU only waits for it to exist
		opts["uds-path"]: func(c net.Conn) { serveHybrid(c, wedged) },
	})
}

func serveHybrid(c net.Conn, wedged bool) {
	defer c.Close()
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		return
	}
	if wedged {
		io.Copy(io.Discard, r) // hold the connection, answer nothing
		return
	}
	agent, err := net.Dial("unix", os.Getenv(fakeAgentEnv))
	if err != nil {
		return
	}
	defer agent.Close()
	if _, err := io.WriteString(c, "OK 1\n"); err != nil {
		return
	}
	go io.Copy(agent, r)
	io.Copy(c, agent)
}

// TestBootRecoversFromWedgedVsock: when the console says the agent listens but the vsock
// backend answers no CONNECT, Boot stops the VM and boots once more, and only once.
// QEMU and vhost-device-vsock are this test binary (fakes); the agent is fakeAgent.
func TestBootRecoversFromWedgedVsock(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	agentSock := listenFakeAgent(t, newFakeAgent())

	old := vsockAnswerTimeout
	vsockAnswerTimeout = time.Second
	t.Cleanup(func() { vsockAnswerTimeout = old })
	guest := imagetest.Guest(t, nil)

	for _, tc := range []struct {
		name        string
		wedgedBoots int
		wantErr     error // nil: Boot succeeds
	}{
		{name: "first boot wedged", wedgedBoots: 1},
		{name: "both boots wedged", wedgedBoots: 2, wantErr: errVsockWedged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			boots := filepath.Join(t.TempDir(), "boots")
			t.Setenv(fakeVMMEnv, "1") // inherited by the processes StartQEMU starts
			t.Setenv(fakeBootsEnv, boots)
			t.Setenv(fakeWedgedEnv, strconv.Itoa(tc.wedgedBoots))
			t.Setenv(fakeAgentEnv, agentSock)
			var progress bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s, err := New(ctx, Options{
				ImageDir: guest, RunBase: t.TempDir(), Accel: vmm.AccelTCG, Progress: &progress,
				BootTimeout: 30 * time.Second, CacheDir: t.TempDir(),
				QEMU: []vmm.QEMUOption{vmm.WithQEMU(self), vmm.WithVhostDeviceVsock(self)},
			})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer s.Close(context.Background())
			g, err := s.Boot(ctx, nil)
			b, _ := os.ReadFile(boots)
			if n := bytes.Count(b, []byte("\n")); n != 2 {
				t.Errorf("the VM was started %d times, want 2 (one boot more after the wedge, no more)", n)
			}
			if !strings.Contains(progress.String(), "no CONNECT was answered") {
				t.Errorf("progress = %q, want the note that it boots again", progress.String())
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Boot = %v, want success on the second boot", err)
				}
				if _, err := g.Agent().Version(ctx, &agentv1.VersionRequest{}); err != nil {
					t.Errorf("Version after the second boot = %v", err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Boot = %v, want %v", err, tc.wantErr)
			}
		})
	}
}
