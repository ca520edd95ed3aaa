package toolpin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const testLock = `# comment
xz-utils  5.4.1-1+deb12u2  f99fc3fe4b4e5baecf5fd8b53853a82e1e71cb5ec187b36b0ddcf227a8961c8f  kernel        xz      # compresses the kernel payload
mawk      1.3.4.20200120-3.1  bcbc83f391854ea9d50ce2a4101aacf330de3b8b71d81a798faadba14a157f78  kernel  awk  # inat tables
libc6-dev 2.36-9+deb12u14  0218fc2befcd784c1b0c6292c0a137ce89fad054efaa579ad083bee0f2c01aae  kernel,agent  -       # static glibc
go        go1.26.8         h1:ZOmGe1OnfREDMIdb1Qi4G9JSuDPBLGExZMQ4nis1RXM=                    init,agent    -       # Go toolchain
`

func TestParse(t *testing.T) {
	pins, err := Parse("lock", strings.NewReader(testLock))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(pins) != 4 {
		t.Fatalf("Parse: %d pins, want 4", len(pins))
	}
	want := Pin{Package: "xz-utils", Version: "5.4.1-1+deb12u2", Digest: "f99fc3fe4b4e5baecf5fd8b53853a82e1e71cb5ec187b36b0ddcf227a8961c8f",
		Reaches: []string{"kernel"}, Programs: []string{"xz"}, Use: "compresses the kernel payload"}
	if got := pins[0]; fmt.Sprint(got) != fmt.Sprint(want) || !slices.Equal(got.Reaches, want.Reaches) || !slices.Equal(got.Programs, want.Programs) || got.Use != want.Use {
		t.Errorf("Parse: first pin %+v, want %+v", got, want)
	}
	if pins[2].Programs != nil {
		t.Errorf("Parse: libc6-dev programs %q, want none for \"-\"", pins[2].Programs)
	}
	l := &Lock{Path: "lock", Pins: pins}
	for _, tc := range []struct {
		parts []string
		want  []string
	}{
		{[]string{Kernel}, []string{"xz-utils", "mawk", "libc6-dev"}},
		{[]string{Init}, []string{"go"}},
		{[]string{Init, Agent}, []string{"libc6-dev", "go"}},
		{[]string{Rootfs}, nil},
	} {
		var got []string
		for _, p := range l.For(tc.parts...) {
			got = append(got, p.Package)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("For(%q) = %q, want %q", tc.parts, got, tc.want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	const sha = "f99fc3fe4b4e5baecf5fd8b53853a82e1e71cb5ec187b36b0ddcf227a8961c8f"
	for _, tc := range []struct {
		name, lock, want string
	}{
		{"too few fields", "xz-utils 5.4.1-1 " + sha + " kernel # x\n", "lock:1: want \"package version digest reaches programs"},
		{"short digest", "xz-utils 5.4.1-1 abcd kernel xz # x\n", "not the hex sha256 of a .deb"},
		{"unknown part", "xz-utils 5.4.1-1 " + sha + " firmware xz # x\n", `reaches "firmware"`},
		{"no comment", "xz-utils 5.4.1-1 " + sha + " kernel xz\n", "say what it does"},
		{"pinned twice", "xz-utils 1 " + sha + " kernel xz # a\nxz-utils 2 " + sha + " kernel xz # b\n", "lock:2: xz-utils is pinned twice"},
		{"go with a sha256", "go go1.26.8 " + sha + " init - # go\n", "h1: sum"},
		{"go without go prefix", "go 1.26.8 h1:ZOmGe1OnfREDMIdb1Qi4G9JSuDPBLGExZMQ4nis1RXM= init - # go\n", "version like go1.26.8"},
		{"empty", "# nothing\n", "no pins"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("lock", strings.NewReader(tc.lock))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse(%q) = %v, want an error containing %q", tc.lock, err, tc.want)
			}
		})
	}
}

// fakeMachine answers dpkg-query from canned tables, the way dpkg-query prints them.
type fakeMachine struct {
	versions map[string]string // package -> installed version
	files    map[string]string // resolved program path -> owning package (as dpkg knows the path)
	resolve  map[string]string // program -> resolved path
	goVer    string
}

func (f fakeMachine) machine() Machine {
	return Machine{
		DpkgQuery: func(_ context.Context, args ...string) ([]byte, error) {
			var b strings.Builder
			switch {
			case args[0] == "-W":
				for _, p := range args[2:] {
					if v, ok := f.versions[p]; ok {
						fmt.Fprintf(&b, "%s\t%s\tii \n", p, v)
					}
				}
			case args[0] == "-S":
				for _, path := range args[1:] {
					if p, ok := f.files[path]; ok {
						fmt.Fprintf(&b, "%s:amd64: %s\n", p, path)
					}
				}
			default:
				return nil, fmt.Errorf("unexpected dpkg-query %q", args)
			}
			return []byte(b.String()), nil
		},
		Resolve: func(program string) (string, error) {
			if p, ok := f.resolve[program]; ok {
				return p, nil
			}
			return "", fmt.Errorf("%s not found", program)
		},
		GoVersion: func(context.Context) (string, error) { return f.goVer, nil },
	}
}

func pinnedMachine() fakeMachine {
	return fakeMachine{
		versions: map[string]string{"xz-utils": "5.4.1-1+deb12u2", "mawk": "1.3.4.20200120-3.1", "libc6-dev": "2.36-9+deb12u14"},
		files:    map[string]string{"/usr/bin/xz": "xz-utils", "/usr/bin/mawk": "mawk"},
		resolve:  map[string]string{"xz": "/usr/bin/xz", "awk": "/usr/bin/mawk"},
		goVer:    "go1.26.8",
	}
}

func TestCheck(t *testing.T) {
	pins, err := Parse("build/toolchain.lock", strings.NewReader(testLock))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(*fakeMachine)
		want   []string // each problem line expected, in order; none: the check passes
	}{
		{name: "pinned machine", change: func(*fakeMachine) {}},
		{name: "newer xz", change: func(m *fakeMachine) { m.versions["xz-utils"] = "5.4.1-1+deb12u3" },
			want: []string{"xz-utils: version 5.4.1-1+deb12u3 installed, pinned 5.4.1-1+deb12u2 (compresses the kernel payload)"}},
		{name: "not installed", change: func(m *fakeMachine) { delete(m.versions, "libc6-dev") },
			want: []string{"libc6-dev: not installed, pinned 2.36-9+deb12u14 (static glibc)"}},
		{name: "awk is gawk", change: func(m *fakeMachine) {
			m.resolve["awk"] = "/usr/bin/gawk"
			m.files["/usr/bin/gawk"] = "gawk"
		}, want: []string{"awk: /usr/bin/gawk belongs to gawk, pinned to mawk"}},
		{name: "xz from /usr/local", change: func(m *fakeMachine) { m.resolve["xz"] = "/usr/local/bin/xz" },
			want: []string{"xz: /usr/local/bin/xz belongs to no Debian package, pinned to xz-utils"}},
		{name: "merged /usr path known to dpkg as /bin", change: func(m *fakeMachine) {
			delete(m.files, "/usr/bin/xz")
			m.files["/bin/xz"] = "xz-utils"
		}},
		{name: "program missing", change: func(m *fakeMachine) { delete(m.resolve, "xz") },
			want: []string{"xz: xz not found; pinned to xz-utils 5.4.1-1+deb12u2"}},
		{name: "other go", change: func(m *fakeMachine) { m.goVer = "go1.26.7" },
			want: []string{"go: go1.26.7 found, pinned go1.26.8 (Go toolchain)"}},
		{name: "two differences", change: func(m *fakeMachine) {
			m.versions["mawk"] = "1.3.4.20240123-1"
			m.goVer = "go1.27.0"
		}, want: []string{"go: go1.27.0 found, pinned go1.26.8", "mawk: version 1.3.4.20240123-1 installed, pinned 1.3.4.20200120-3.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := pinnedMachine()
			tc.change(&m)
			err := Check(context.Background(), "build/toolchain.lock", pins, m.machine())
			if len(tc.want) == 0 {
				if err != nil {
					t.Errorf("Check = %v, want nil", err)
				}
				return
			}
			var mm *MismatchError
			if !errors.As(err, &mm) {
				t.Fatalf("Check = %v, want a *MismatchError", err)
			}
			if len(mm.Problems) != len(tc.want) {
				t.Fatalf("Check problems = %q, want %d like %q", mm.Problems, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(mm.Problems[i], w) {
					t.Errorf("Check problem %d = %q, want it to start with %q", i, mm.Problems[i], w)
				}
			}
			if msg := err.Error(); !strings.Contains(msg, "build/toolchain.lock") || !strings.Contains(msg, "make setup") {
				t.Errorf("Check error %q does not name the lock and the fix", msg)
			}
		})
	}
}

func TestParseOwners(t *testing.T) {
	out := "diversion by dash from: /bin/sh\nbinutils-x86-64-linux-gnu: /usr/bin/x86_64-linux-gnu-as\nlibc6:amd64, libc6:i386: /usr/share/doc/libc6\n"
	got := ParseOwners([]byte(out))
	if want := []string{"binutils-x86-64-linux-gnu"}; !slices.Equal(got["/usr/bin/x86_64-linux-gnu-as"], want) {
		t.Errorf("ParseOwners(as) = %q, want %q", got["/usr/bin/x86_64-linux-gnu-as"], want)
	}
	if want := []string{"libc6", "libc6"}; !slices.Equal(got["/usr/share/doc/libc6"], want) {
		t.Errorf("ParseOwners(multiarch) = %q, want %q", got["/usr/share/doc/libc6"], want)
	}
	if _, ok := got["/bin/sh"]; ok {
		t.Errorf("ParseOwners: a diversion line was taken for an owner")
	}
}

func TestParseVersions(t *testing.T) {
	out := "gcc-12\t12.2.0-14+deb12u1\tii \nold\t1.0\trc \n"
	got := ParseVersions([]byte(out))
	if got["gcc-12"] != "12.2.0-14+deb12u1" || got["old"] != "" {
		t.Errorf("ParseVersions(%q) = %v, want gcc-12 installed and old (config files only) absent", out, got)
	}
}

// The committed lock parses and pins what the image builders ask for.
func TestCommittedLock(t *testing.T) {
	l, err := Read(filepath.Join("..", "toolchain.lock"))
	if err != nil {
		t.Fatalf("Read(build/toolchain.lock): %v", err)
	}
	for _, part := range parts {
		if len(l.For(part)) == 0 {
			t.Errorf("build/toolchain.lock pins nothing that reaches %s", part)
		}
	}
	var goPins int
	for _, p := range l.Pins {
		if p.Package == GoToolchain {
			goPins++
		}
	}
	if goPins != 1 {
		t.Errorf("build/toolchain.lock pins the Go toolchain %d times, want once", goPins)
	}
}

// On this machine (a Debian build host), System answers for the real dpkg database: the
// check runs end to end, and a lock with one version changed is refused naming both.
func TestSystemRefusesChangedPin(t *testing.T) {
	if _, err := os.Stat("/var/lib/dpkg/status"); err != nil {
		t.Skip("not a Debian machine")
	}
	l, err := Read(filepath.Join("..", "toolchain.lock"))
	if err != nil {
		t.Fatal(err)
	}
	pins := l.For(Kernel)
	m := System("/usr/sbin:/usr/bin:/sbin:/bin")
	if err := Check(context.Background(), l.Path, pins, m); err != nil {
		t.Skipf("this machine does not match the lock (run make setup): %v", err)
	}
	changed := slices.Clone(pins)
	i := slices.IndexFunc(changed, func(p Pin) bool { return p.Package == "xz-utils" })
	if i < 0 {
		t.Fatal("build/toolchain.lock does not pin xz-utils")
	}
	want := changed[i].Version
	changed[i].Version = "5.6.4-1"
	err = Check(context.Background(), l.Path, changed, m)
	if err == nil || !strings.Contains(err.Error(), "xz-utils: version "+want+" installed, pinned 5.6.4-1") {
		t.Errorf("Check(xz-utils pinned to 5.6.4-1) = %v, want a refusal naming %s and 5.6.4-1", err, want)
	}
}
