package boot

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"confguest/init/cmdline"
)

type fakeStep struct {
	name string
	err  error
	ran  *[]string
}

func (f fakeStep) String() string { return f.name }
func (f fakeStep) Run(context.Context) error {
	*f.ran = append(*f.ran, f.name)
	return f.err
}

func TestRunStopsAtFirstFailure(t *testing.T) {
	var ran []string
	boom := errors.New("no such device\nsecond line")
	steps := []Step{fakeStep{"a", nil, &ran}, fakeStep{"b", boom, &ran}, fakeStep{"c", nil, &ran}}
	err := Run(context.Background(), slog.New(slog.DiscardHandler), steps)
	var se *StepError
	if !errors.As(err, &se) || se.Step != "b" || !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want StepError for step b wrapping %v", err, boom)
	}
	if got, want := err.Error(), "b: no such device; second line"; got != want {
		t.Errorf("Run error text = %q, want %q", got, want)
	}
	if strings.Join(ran, ",") != "a,b" {
		t.Errorf("steps run = %v, want [a b]", ran)
	}
	ran = nil
	if err := Run(context.Background(), slog.New(slog.DiscardHandler), steps[:1]); err != nil || len(ran) != 1 {
		t.Errorf("Run(one good step) = %v after %v, want nil after [a]", err, ran)
	}
}

func TestOneLine(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"a\nb", "a; b"},
		{"a\r\n\nb\n", "a; b"},
		{"  padded \n", "padded"},
	}
	for _, tc := range tests {
		if got := OneLine(tc.in); got != tc.want {
			t.Errorf("OneLine(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// index returns the position of the first step whose String contains s.
func index(t *testing.T, steps []Step, s string) int {
	t.Helper()
	for i, st := range steps {
		if strings.Contains(st.String(), s) {
			return i
		}
	}
	t.Fatalf("no step mentions %q", s)
	return -1
}

func TestStepsOrder(t *testing.T) {
	var cfg cmdline.Config
	steps := Steps(Plan{CmdlinePath: "/proc/cmdline", Config: &cfg})
	seen := map[string]bool{}
	for _, s := range steps {
		if s.String() == "" || seen[s.String()] {
			t.Errorf("step %T has an empty or repeated name %q", s, s.String())
		}
		seen[s.String()] = true
	}
	if _, ok := steps[0].(Mount); !ok || steps[0].(Mount).Target != "/dev" {
		t.Errorf("first step = %v, want the devtmpfs mount on /dev", steps[0])
	}
	before := [][2]string{
		{"on /proc", "read kernel command line"},
		{"cgroup2 on /sys/fs/cgroup", "enable cgroup controllers"},
		{"on /sys", "cgroup2"},
		{"sysfs on /sys", "configfs on " + ConfigFS},
		{"configfs on " + ConfigFS, "switch root"},
		{"read kernel command line", "wait for root device"},
		{"wait for root device", "create dm-verity device"},
		{"create dm-verity device", "set read-ahead of /dev/mapper/root"},
		{"set read-ahead of /dev/mapper/root", "mount verity root"},
		{"mount verity root", "on /newroot/tmp"},
		{"on /newroot/var", "switch root"},
		{"on /run", "switch root"},
		{"switch root", "create " + StateDir},
	}
	for _, b := range before {
		if i, j := index(t, steps, b[0]), index(t, steps, b[1]); i >= j {
			t.Errorf("step %q (#%d) runs after %q (#%d), want before", b[0], i, b[1], j)
		}
	}
	if last := steps[len(steps)-1].String(); last != "create "+StateDir {
		t.Errorf("last step = %q, want create %s", last, StateDir)
	}
}

func TestParseCmdlineStep(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	line := "console=ttyS0 confguest.root=/dev/vda confguest.roothash=" + strings.Repeat("0a", 32) +
		" confguest.salt=- confguest.datablocks=10 confguest.hashoffset=40960 confguest.loglevel=debug\n"
	if err := os.WriteFile(good, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte(line+" confguest.extra=1"), 0o644); err != nil {
		t.Fatal(err)
	}
	var cfg cmdline.Config
	level := new(slog.LevelVar)
	if err := (ParseCmdline{Path: good, Into: &cfg, Level: level}).Run(context.Background()); err != nil {
		t.Fatalf("ParseCmdline(%s) = %v", good, err)
	}
	if cfg.Root != "/dev/vda" || cfg.DataBlocks != 10 || level.Level() != slog.LevelDebug {
		t.Errorf("ParseCmdline(%q) gave %+v, level %v; want root /dev/vda, 10 blocks, debug", line, cfg, level.Level())
	}
	if err := (ParseCmdline{Path: bad, Into: &cfg}).Run(context.Background()); !errors.Is(err, cmdline.ErrUnknownKey) {
		t.Errorf("ParseCmdline(unknown key) = %v, want ErrUnknownKey", err)
	}
	if err := (ParseCmdline{Path: filepath.Join(dir, "none"), Into: &cfg}).Run(context.Background()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ParseCmdline(missing file) = %v, want ErrNotExist", err)
	}
}

func TestEnableControllers(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cgroup.controllers"), []byte("cpuset cpu io memory pids\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := (EnableControllers{Dir: dir}).Run(context.Background()); err != nil {
		t.Fatalf("EnableControllers = %v", err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if want := "+cpuset +cpu +io +memory +pids"; string(got) != want {
		t.Errorf("subtree_control = %q, want %q", got, want)
	}
	if err := (EnableControllers{Dir: filepath.Join(dir, "missing")}).Run(context.Background()); err == nil {
		t.Errorf("EnableControllers(missing dir) = nil, want an error")
	}
}

func TestMountNeedsMountPoint(t *testing.T) {
	m := Mount{Source: "tmp", Target: filepath.Join(t.TempDir(), "absent"), FSType: "tmpfs"}
	if err := m.Run(context.Background()); !errors.Is(err, ErrNotMountPoint) {
		t.Errorf("Mount(%s) = %v, want ErrNotMountPoint", m.Target, err)
	}
}

func TestWaitDevice(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "regular")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, root, want string
		is               error
	}{
		{"never appears", filepath.Join(dir, "vda"), "did not appear within 50ms", ErrNoRootDevice},
		{"not a block device", file, "is not a block device", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := (WaitDevice{Config: &cmdline.Config{Root: tc.root}, Timeout: 50 * time.Millisecond}).Run(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Errorf("WaitDevice(%s) = %v, want error containing %q", tc.root, err, tc.want)
			}
			if !strings.Contains(err.Error(), "confguest.root="+tc.root) {
				t.Errorf("WaitDevice error %q does not name the parameter", err)
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("WaitDevice took %v with a 50ms timeout", time.Since(start))
			}
		})
	}
}

func TestVerityTargetFromCmdline(t *testing.T) {
	c := &cmdline.Config{Root: "/dev/vda", RootHash: make([]byte, 32), Salt: []byte{0xaa}, DataBlocks: 2560, HashOffset: 10485760}
	p, err := VerityTarget(c).Params()
	if err != nil {
		t.Fatal(err)
	}
	want := "1 /dev/vda /dev/vda 4096 4096 2560 2561 sha256 " + strings.Repeat("00", 32) + " aa 1 try_verify_in_tasklet"
	if p != want {
		t.Errorf("VerityTarget(%+v).Params() = %q, want %q", c, p, want)
	}
}

func TestReadAhead(t *testing.T) {
	// /dev/null (1:3) stands in for the device: the step only needs its
	// device number to find the sysfs file.
	sys := t.TempDir()
	dir := filepath.Join(sys, "dev", "block", "1:3", "queue")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "read_ahead_kb")
	if err := os.WriteFile(file, []byte("128\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := (ReadAhead{Device: "/dev/null", Config: &cmdline.Config{ReadAheadKB: 2048}, Sys: sys}).Run(context.Background()); err != nil {
		t.Fatalf("ReadAhead(/dev/null) = %v", err)
	}
	if got, _ := os.ReadFile(file); string(got) != "2048" {
		t.Errorf("read_ahead_kb = %q, want 2048", got)
	}
	if err := (ReadAhead{Device: "/dev/absent", Config: &cmdline.Config{ReadAheadKB: 1}, Sys: sys}).Run(context.Background()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadAhead(/dev/absent) = %v, want ErrNotExist", err)
	}
}
