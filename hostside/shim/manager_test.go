package shim

import (
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	cshim "github.com/containerd/containerd/runtime/v2/shim"
)

// listenFull listens on path with a backlog the test fills, as a shim too busy to accept
// on a loaded machine: a further connection neither succeeds nor is refused in time.
func listenFull(t *testing.T, path string) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	for range 8 {
		c, err := net.DialTimeout("unix", path, 50*time.Millisecond)
		if err != nil {
			return
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatalf("%s: could not fill the backlog", path)
}

func TestShimListening(t *testing.T) {
	dir := t.TempDir()
	// A live shim.
	live, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "live"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	// A shim that crashed: its socket file stays, nobody listens.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "stale"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	listenFull(t, filepath.Join(dir, "busy"))
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"live", true},
		{"busy", true},
		{"stale", false},
		{"missing", false},
	} {
		address := "unix://" + filepath.Join(dir, tc.name)
		if got := shimListening(address, 200*time.Millisecond); got != tc.want {
			t.Errorf("shimListening(%q) = %v, want %v", address, got, tc.want)
		}
	}
	// What StartShim used before: it takes the busy shim for a crashed one.
	if cshim.CanConnect("unix://" + filepath.Join(dir, "busy")) {
		t.Errorf("containerd's CanConnect connected to a full backlog: the busy case does not test the timeout")
	}
}
