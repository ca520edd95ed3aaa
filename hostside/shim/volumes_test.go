package shim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"confguest/agent/api/policy"
	agentv1 "confguest/agent/api/v1"
)

// criTree lays out under root what the kubelet and containerd's CRI prepare for a pod's
// container, and returns the bundle spec mounts containerd 1.6 writes for it (the order
// and options of its CRI plugin).
func criTree(t *testing.T, root string) []specs.Mount {
	t.Helper()
	pod := filepath.Join(root, "var/lib/kubelet/pods/0a1b-uid")
	sandbox := filepath.Join(root, "var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/5f6e")
	shm := filepath.Join(root, "run/containerd/io.containerd.grpc.v1.cri/sandboxes/5f6e/shm")
	cm := filepath.Join(pod, "volumes/kubernetes.io~configmap/cfg")
	token := filepath.Join(pod, "volumes/kubernetes.io~projected/kube-api-access-x")
	files := map[string]string{
		filepath.Join(sandbox, "resolv.conf"):                  "nameserver 10.96.0.10\n",
		filepath.Join(sandbox, "hostname"):                     "web\n",
		filepath.Join(pod, "etc-hosts"):                        "127.0.0.1 localhost\n",
		filepath.Join(pod, "containers/app/3c4d"):              "",
		filepath.Join(cm, "..2026_12_06_04_00_00.1/app.conf"):  "port=80\n",
		filepath.Join(cm, "..2026_12_06_04_00_00.1/sub/x.txt"): "x\n",
		filepath.Join(token, "..2026_12_06_04_00_00.2/token"):  "eyJ...\n",
		filepath.Join(token, "..2026_12_06_04_00_00.2/ca.crt"): "-----BEGIN CERTIFICATE-----\n",
	}
	for name, data := range files {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(pod, "containers/app/3c4d"), 0o666); err != nil {
		t.Fatal(err)
	}
	// The kubelet's atomic writer: ..data is a symlink to the current timestamped
	// directory, and each key a symlink into ..data.
	for _, l := range [][2]string{
		{"..2026_12_06_04_00_00.1", filepath.Join(cm, "..data")},
		{"..data/app.conf", filepath.Join(cm, "app.conf")},
		{"..data/sub", filepath.Join(cm, "sub")},
		{"..2026_12_06_04_00_00.2", filepath.Join(token, "..data")},
		{"..data/token", filepath.Join(token, "token")},
		{"..data/ca.crt", filepath.Join(token, "ca.crt")},
	} {
		if err := os.Symlink(l[0], l[1]); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{shm, filepath.Join(pod, "volumes/kubernetes.io~empty-dir/cache")} {
		if err := os.MkdirAll(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	rw, ro := []string{"rbind", "rprivate", "rw"}, []string{"rbind", "rprivate", "ro"}
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/cache", Type: "bind", Source: filepath.Join(pod, "volumes/kubernetes.io~empty-dir/cache"), Options: rw},
		{Destination: "/etc/config", Type: "bind", Source: cm, Options: ro},
		{Destination: "/var/run/secrets/kubernetes.io/serviceaccount", Type: "bind", Source: token, Options: ro},
		{Destination: "/etc/hosts", Type: "bind", Source: filepath.Join(pod, "etc-hosts"), Options: rw},
		{Destination: "/dev/termination-log", Type: "bind", Source: filepath.Join(pod, "containers/app/3c4d"), Options: rw},
		{Destination: "/etc/hostname", Type: "bind", Source: filepath.Join(sandbox, "hostname"), Options: rw},
		{Destination: "/etc/resolv.conf", Type: "bind", Source: filepath.Join(sandbox, "resolv.conf"), Options: rw},
		{Destination: "/dev/shm", Type: "bind", Source: shm, Options: rw},
	}
}

// volumeSummary prints a volume as "dest kind ro [entries]" for comparisons.
func volumeSummary(v *agentv1.Volume) string {
	s := fmt.Sprintf("%s ro=%t", v.GetDestination(), v.GetReadOnly())
	if e := v.GetEmptyDir(); e != nil {
		return s + fmt.Sprintf(" emptyDir(%s, memory=%t)", filepath.Base(e.GetName()), e.GetMemory())
	}
	for _, e := range v.GetFiles().GetEntries() {
		s += fmt.Sprintf(" %q:%o:dir=%t:%q", e.GetPath(), e.GetMode(), e.GetDir(), e.GetData())
	}
	return s
}

// TestGuestVolumesSharedShm: with shareShm (a pod under the default policy) the pod's
// /dev/shm is a memory emptyDir named by containerd's sandbox shm path, which every
// container of the pod mounts, so they share it as runc's do; without, it is left out.
func TestGuestVolumesSharedShm(t *testing.T) {
	mounts := criTree(t, t.TempDir())
	shm := mounts[len(mounts)-1]
	for _, share := range []bool{true, false} {
		cv, err := guestVolumes("app", &specs.Spec{Mounts: []specs.Mount{shm}}, share)
		if err != nil {
			t.Fatalf("guestVolumes(shareShm %t) = %v", share, err)
		}
		var sums []string
		for _, v := range cv.volumes {
			sums = append(sums, volumeSummary(v))
		}
		want := []string(nil)
		if share {
			want = []string{"/dev/shm ro=false emptyDir(shm, memory=true)"}
		}
		if !reflect.DeepEqual(sums, want) {
			t.Errorf("guestVolumes(the pod's shm, shareShm %t) = %q, want %q", share, sums, want)
		}
		if share && cv.volumes[0].GetEmptyDir().GetName() != shm.Source {
			t.Errorf("shared shm named %q, want the sandbox's shm path %q", cv.volumes[0].GetEmptyDir().GetName(), shm.Source)
		}
	}
}

// TestGuestVolumes: the bind mounts of a containerd-CRI bundle spec become volumes: the
// kubelet's emptyDir an emptyDir named by its host path, the kubelet's and containerd's
// files copied (a ConfigMap's keys through its ..data symlinks, without the atomic
// writer's own entries), read-only as the spec says; /dev/shm and non-bind mounts are left
// to the guest spec.
func TestGuestVolumes(t *testing.T) {
	root := t.TempDir()
	mounts := criTree(t, root)
	cv, err := guestVolumes("app", &specs.Spec{Mounts: mounts}, false)
	if err != nil {
		t.Fatalf("guestVolumes = %v", err)
	}
	got := cv.volumes
	var dirs, back []string
	for _, r := range cv.refreshed {
		dirs = append(dirs, r.dest)
	}
	for _, r := range cv.readBack {
		back = append(back, r.dest+" "+r.src)
	}
	if want := []string{"/etc/config", "/var/run/secrets/kubernetes.io/serviceaccount"}; !reflect.DeepEqual(dirs, want) {
		t.Errorf("guestVolumes refreshes %q, want the directories of host files %q", dirs, want)
	}
	if want := []string{"/dev/termination-log " + mounts[6].Source}; !reflect.DeepEqual(back, want) {
		t.Errorf("guestVolumes reads back %q, want the termination log %q", back, want)
	}
	var sums []string
	for _, v := range got {
		sums = append(sums, volumeSummary(v))
	}
	want := []string{
		`/cache ro=false emptyDir(cache, memory=false)`,
		`/etc/config ro=true "app.conf":644:dir=false:"port=80\n" "sub":755:dir=true:"" "sub/x.txt":644:dir=false:"x\n"`,
		`/var/run/secrets/kubernetes.io/serviceaccount ro=true "ca.crt":644:dir=false:"-----BEGIN CERTIFICATE-----\n" "token":644:dir=false:"eyJ...\n"`,
		`/etc/hosts ro=false "":644:dir=false:"127.0.0.1 localhost\n"`,
		`/dev/termination-log ro=false "":666:dir=false:""`,
		`/etc/hostname ro=false "":644:dir=false:"web\n"`,
		`/etc/resolv.conf ro=false "":644:dir=false:"nameserver 10.96.0.10\n"`,
	}
	if !reflect.DeepEqual(sums, want) {
		t.Errorf("guestVolumes =\n%s\nwant\n%s", strings.Join(sums, "\n"), strings.Join(want, "\n"))
	}
	if name := got[0].GetEmptyDir().GetName(); name != mounts[2].Source {
		t.Errorf("emptyDir name %q, want its host path %q (two containers naming it share it)", name, mounts[2].Source)
	}

	// The default pod policy takes the emptyDir and the standard destinations, not the
	// ConfigMap at /etc/config.
	var allowed []string
	for _, v := range defaultVolumes(got) {
		allowed = append(allowed, fmt.Sprintf("%s %s%s", v.Destination, v.Kind, map[bool]string{true: " read_back"}[v.ReadBack]))
	}
	wantAllowed := []string{"/cache " + policy.VolumeEmptyDir, "/var/run/secrets/kubernetes.io/serviceaccount files", "/etc/hosts files",
		"/dev/termination-log files read_back", "/etc/hostname files", "/etc/resolv.conf files"}
	if !reflect.DeepEqual(allowed, wantAllowed) {
		t.Errorf("defaultVolumes = %q, want %q", allowed, wantAllowed)
	}
}

// TestGuestVolumesRefused: a hostPath or device bind mount, a symlink out of a volume, and
// files over the agent's bounds fail the create with an InvalidArgument naming the
// destination, the host path and the bound.
func TestGuestVolumesRefused(t *testing.T) {
	root := t.TempDir()
	vol := func(name string) string {
		d := filepath.Join(root, "var/lib/kubelet/pods/u/volumes/kubernetes.io~secret", name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	write := func(name string, n int) {
		if err := os.WriteFile(name, make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	escape := vol("escape")
	if err := os.Symlink("/etc/passwd", filepath.Join(escape, "passwd")); err != nil {
		t.Fatal(err)
	}
	huge := vol("huge")
	write(filepath.Join(huge, "big"), agentv1.MaxVolumeFileBytes+1)
	many := vol("many")
	for i := 0; i <= agentv1.MaxVolumeEntries; i++ {
		write(filepath.Join(many, fmt.Sprint(i)), 0)
	}
	total := vol("total")
	for i := 0; i < 3; i++ {
		write(filepath.Join(total, fmt.Sprint(i)), agentv1.MaxVolumeFileBytes)
	}
	for _, tc := range []struct {
		name  string
		mount specs.Mount
		want  []string
	}{
		{"a hostPath directory", specs.Mount{Destination: "/data", Type: "bind", Source: root, Options: []string{"rbind"}}, []string{`mount at "/data"`, root, "hostPath or block volume"}},
		{"a device", specs.Mount{Destination: "/dev/xvda", Type: "bind", Source: "/dev/null", Options: []string{"rbind"}}, []string{`mount at "/dev/xvda"`, "/dev/null", "hostPath or block volume"}},
		{"a symlink out of the volume", specs.Mount{Destination: "/s", Source: escape, Options: []string{"rbind"}}, []string{`mount at "/s"`, "symlink out of the volume"}},
		{"a huge file", specs.Mount{Destination: "/s", Source: huge, Options: []string{"rbind"}}, []string{`mount at "/s"`, filepath.Join(huge, "big"), fmt.Sprintf("at most %d", agentv1.MaxVolumeFileBytes)}},
		{"too many files", specs.Mount{Destination: "/s", Source: many, Options: []string{"rbind"}}, []string{`mount at "/s"`, fmt.Sprintf("at most %d", agentv1.MaxVolumeEntries)}},
		{"too many bytes", specs.Mount{Destination: "/s", Source: total, Options: []string{"rbind"}}, []string{`mount at "/s"`, fmt.Sprintf("at most %d bytes in all", agentv1.MaxVolumeBytes)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := guestVolumes("app", &specs.Spec{Mounts: []specs.Mount{tc.mount}}, false)
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("guestVolumes(%s) = %v, want InvalidArgument", tc.mount.Source, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("guestVolumes(%s) = %v, want it to name %q", tc.mount.Source, err, w)
				}
			}
		})
	}
}

// updates records the UpdateVolume calls refreshVolumes makes.
type updates chan string

func (u updates) UpdateVolume(_ context.Context, id, dest string, files *agentv1.Files) error {
	var keys []string
	for _, e := range files.GetEntries() {
		keys = append(keys, fmt.Sprintf("%s=%q", e.GetPath(), e.GetData()))
	}
	u <- id + " " + dest + " " + strings.Join(keys, " ")
	return nil
}

// swapConfigMap does what the kubelet's atomic writer does to the ConfigMap volume cm: the
// new generation (app.conf and sub/x.txt), then ..data renamed onto it.
func swapConfigMap(t *testing.T, cm string) {
	t.Helper()
	gen := filepath.Join(cm, "..2026_12_06_05_00_00.3")
	if err := os.MkdirAll(filepath.Join(gen, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"app.conf": "port=8080\n", "sub/x.txt": "x\n"} {
		if err := os.WriteFile(filepath.Join(gen, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("..2026_12_06_05_00_00.3", filepath.Join(cm, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(cm, "..data_tmp"), filepath.Join(cm, "..data")); err != nil {
		t.Fatal(err)
	}
}

// swappedConfigMap is the UpdateVolume call for the ConfigMap after swapConfigMap.
const swappedConfigMap = `app /etc/config app.conf="port=8080\n" sub="" sub/x.txt="x\n"`

// TestRefreshVolumes: a ConfigMap the kubelet rewrites (a new ..data generation swapped
// in) is sent to the guest again at the next wakeup, once; an unchanged one is not.
func TestRefreshVolumes(t *testing.T) {
	root := t.TempDir()
	mounts := criTree(t, root)
	cv, err := guestVolumes("app", &specs.Spec{Mounts: mounts}, false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wake, got := make(chan struct{}), make(updates, 10)
	done := make(chan struct{})
	go func() { refreshVolumes(ctx, got, "app", cv.refreshed, wake); close(done) }()

	wake <- struct{}{}
	swapConfigMap(t, mounts[3].Source)
	wake <- struct{}{}
	wake <- struct{}{}
	cancel()
	<-done
	close(got)
	var calls []string
	for c := range got {
		calls = append(calls, c)
	}
	if want := []string{swappedConfigMap}; !reflect.DeepEqual(calls, want) {
		t.Errorf("UpdateVolume calls = %q, want %q", calls, want)
	}
}

// TestVolumeWakeups: the kubelet's swap of a ConfigMap's ..data wakes the refresh through
// inotify, before a timer's first read could have, and the shim's one inotify descriptor
// is closed with the shim.
func TestVolumeWakeups(t *testing.T) {
	mounts := criTree(t, t.TempDir())
	cv, err := guestVolumes("app", &specs.Spec{Mounts: mounts}, false)
	if err != nil {
		t.Fatal(err)
	}
	fds := openFDs(t)
	var w dirWatch
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(updates, 10)
	done := make(chan struct{})
	wake := volumeWakeups(ctx, &w, "app", cv.refreshed)
	go func() { refreshVolumes(ctx, got, "app", cv.refreshed, wake); close(done) }()
	if n := openFDs(t); n != fds+1 {
		t.Errorf("open descriptors with the watch = %d, want %d (one inotify descriptor)", n, fds+1)
	}

	start := time.Now()
	swapConfigMap(t, mounts[3].Source)
	select {
	case c := <-got:
		if c != swappedConfigMap {
			t.Errorf("UpdateVolume call = %q, want %q", c, swappedConfigMap)
		}
		if d := time.Since(start); d >= volumeRefreshInterval {
			t.Errorf("update sent after %s, not before the first timed read (%s at the earliest): the inotify watch did not wake it", d, volumeRefreshInterval)
		}
	case <-time.After(2 * volumeBackstop):
		t.Fatalf("no UpdateVolume call within %s of the ..data swap", 2*volumeBackstop)
	}
	cancel()
	<-done
	w.close()
	if n := openFDs(t); n != fds {
		t.Errorf("open descriptors after the watch closed = %d, want %d", n, fds)
	}
}

// TestDirWatchShared: containers share the shim's inotify instance and may watch the same
// directory; a change there wakes each of them, and a directory stays watched until the
// last container that watches it is removed.
func TestDirWatchShared(t *testing.T) {
	shared, own := t.TempDir(), t.TempDir()
	var w dirWatch
	defer w.close()
	a, b := make(chan struct{}, 10), make(chan struct{}, 10)
	removeA, err := w.add([]string{shared}, func() { a <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	removeB, err := w.add([]string{shared, own}, func() { b <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	if n := watches(t, &w); n != 2 {
		t.Errorf("inotify watches = %d, want 2 (the shared directory once, and own)", n)
	}
	touch := func(dir, name string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	woken := func(c chan struct{}) bool {
		select {
		case <-c:
			return true
		case <-time.After(5 * time.Second):
			return false
		}
	}
	touch(shared, "1")
	if !woken(a) || !woken(b) {
		t.Fatal("a change in the shared directory did not wake both containers")
	}
	removeA()
	if n := watches(t, &w); n != 2 {
		t.Errorf("inotify watches after one container went = %d, want 2 (the other still watches both)", n)
	}
	touch(own, "2")
	if !woken(b) {
		t.Fatal("a change in the second container's own directory did not wake it")
	}
	removeB()
	if n := watches(t, &w); n != 0 {
		t.Errorf("inotify watches after both containers went = %d, want 0", n)
	}
	touch(shared, "3")
	time.Sleep(10 * volumeSettle)
	if len(a)+len(b) != 0 {
		t.Errorf("removed containers were woken %d and %d times", len(a), len(b))
	}
	if _, err := w.add([]string{filepath.Join(own, "absent")}, func() {}); err == nil {
		t.Error("watching a directory that does not exist succeeded")
	}
}

// watches counts the watches of w's inotify instance (the inotify lines of its fdinfo).
func watches(t *testing.T, w *dirWatch) int {
	t.Helper()
	w.mu.Lock()
	fd := w.fd
	w.mu.Unlock()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", fd))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "inotify wd:")
}

// openFDs is the number of this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

type termLog string

func (l termLog) ReadVolume(_ context.Context, id, dest string) ([]byte, error) {
	return []byte(string(l) + " from " + id + " " + dest), nil
}

// TestReadBack: what the container wrote to its termination log in the guest replaces the
// kubelet's host file.
func TestReadBack(t *testing.T) {
	mounts := criTree(t, t.TempDir())
	cv, err := guestVolumes("app", &specs.Spec{Mounts: mounts}, false)
	if err != nil {
		t.Fatal(err)
	}
	readBack(context.Background(), termLog("oom"), "app", cv.readBack)
	got, err := os.ReadFile(mounts[6].Source)
	if want := "oom from app /dev/termination-log"; err != nil || string(got) != want {
		t.Errorf("host termination log after readBack = %q, %v; want %q", got, err, want)
	}
}
