package launcher

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	agentv1 "confguest/agent/api/v1"
)

// TestCallEndsOnStalledConnection: a guest that stopped reading its connection (a frozen
// VM) while the host wrote a large stdin chunk. ttrpc's client holds its send lock across
// that blocked write and ignores the context, so a plain client's Shutdown would wait for
// ever; the launcher's (newAgentConn) returns at its deadline, and closing the client then
// ends the stalled write.
func TestCallEndsOnStalledConnection(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	hostEnd, guestEnd := os.NewFile(uintptr(fds[0]), "host"), os.NewFile(uintptr(fds[1]), "guest")
	defer guestEnd.Close() // the guest never reads
	conn, err := net.FileConn(hostEnd)
	hostEnd.Close()
	if err != nil {
		t.Fatal(err)
	}
	client := newAgentConn(conn)
	agent := agentv1.NewAgentClient(client)

	// A 3 MiB stdin write fills the socket's buffer and blocks, holding the send lock.
	stdin := make(chan error, 1)
	go func() {
		_, err := agent.WriteStdin(context.Background(), &agentv1.WriteStdinRequest{Process: &agentv1.ProcessRef{ContainerId: "app"}, Data: make([]byte, 3<<20)})
		stdin <- err
	}()
	time.Sleep(200 * time.Millisecond) // let the write take the lock

	start := time.Now()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := agent.Shutdown(ctx, &agentv1.ShutdownRequest{})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown on a stalled connection = %v, want DeadlineExceeded", err)
		}
		t.Logf("Shutdown returned after %s", time.Since(start).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown with a 300ms deadline did not return within 30s on a stalled connection: it waits for ttrpc's blocked write")
	}

	client.Close()
	select {
	case err := <-stdin:
		if err == nil {
			t.Error("the stalled stdin write succeeded, want an error once the client is closed")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("closing the client did not end the stalled stdin write")
	}
}
