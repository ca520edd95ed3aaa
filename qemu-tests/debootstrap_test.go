package qemutests

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCLIRunDebootstrap: confguest run --rootfs runs a Debian bookworm root filesystem made
// by debootstrap, whose /dev holds device nodes (console, null, ...): the disk build leaves
// them out with one line saying so, and the container gets its own /dev.
func TestCLIRunDebootstrap(t *testing.T) {
	root := debootstrapRoot(t, "bookworm")
	e := newCLIEnv(t)
	args := append(append([]string{"run"}, e.launchFlags()...), "--rootfs", root, "--",
		"/bin/sh", "-c", "cat /etc/debian_version; test -c /dev/null && echo /dev/null is a device")
	r := e.run("", args...)
	skipUnimplemented(t, r)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "12.") || !strings.Contains(r.stdout, "/dev/null is a device") {
		t.Errorf("confguest run --rootfs (debootstrap bookworm) = stdout %q, exit %d; want Debian 12's version and the container's /dev/null\nstderr:\n%s", r.stdout, r.code, r.stderr)
	}
	if n := strings.Count(r.stderr, "device nodes, fifos and sockets under"); n != 1 || !strings.Contains(r.stderr, "dev/console") {
		t.Errorf("confguest run stderr says %d times what it left out of /dev, want once, naming dev/console:\n%s", n, r.stderr)
	}
	e.checkNoLeftovers()
}

// debootstrapRoot returns a minbase Debian root of suite made by debootstrap, cached outside
// the repository ($CONFGUEST_CACHE, default ~/.cache/confguest, under debootstrap/) by suite.
// The mirror is the Debian archive the machine's apt sources name.
func debootstrapRoot(t *testing.T, suite string) string {
	t.Helper()
	cache := os.Getenv("CONFGUEST_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Fatal(err)
		}
		cache = filepath.Join(home, ".cache", "confguest")
	}
	dir := filepath.Join(cache, "debootstrap", suite+"-minbase")
	if _, err := os.Stat(filepath.Join(dir, "etc", "debian_version")); err == nil {
		return dir
	}
	if os.Geteuid() != 0 {
		missing(t, "debootstrap needs root to make the %s root", suite)
	}
	bin, err := exec.LookPath("debootstrap")
	if err != nil {
		missing(t, "debootstrap is not installed (apt-get install debootstrap)")
	}
	mirror := aptMirror(t)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+suite+"-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	t.Logf("debootstrap --variant=minbase %s from %s (cached in %s)", suite, mirror, dir)
	out, err := exec.CommandContext(ctx, bin, "--variant=minbase", suite, tmp, mirror).CombinedOutput()
	if err != nil {
		t.Fatalf("debootstrap %s: %v\n%s", suite, err, tail(string(out), 30))
	}
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// aptMirror is the first Debian archive (not its security archive) the machine's apt sources
// name, in either format (one-line .list or deb822 .sources).
func aptMirror(t *testing.T) string {
	t.Helper()
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	lists, _ := filepath.Glob("/etc/apt/sources.list.d/*.list")
	files = append(append(files, "/etc/apt/sources.list"), lists...)
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			var uris []string
			switch {
			case len(fields) >= 2 && fields[0] == "URIs:":
				uris = fields[1:]
			case len(fields) >= 3 && fields[0] == "deb":
				uris = fields[1:2]
				if strings.HasPrefix(uris[0], "[") { // deb [options] URI suite
					uris = nil
					for i, f := range fields[1:] {
						if strings.HasSuffix(f, "]") && i+2 < len(fields) {
							uris = fields[i+2 : i+3]
							break
						}
					}
				}
			}
			for _, u := range uris {
				if strings.Contains(u, "://") && strings.HasSuffix(strings.TrimSuffix(u, "/"), "/debian") {
					f.Close()
					return u
				}
			}
		}
		f.Close()
	}
	missing(t, "no Debian archive in the apt sources (/etc/apt/sources.list*) to debootstrap from")
	return ""
}
