// Package podbench measures pod start and idle pod memory through containerd's CRI, under
// the confguest runtime handler and under runc in one run: the private containerd of
// build/conformance (Debian's containerd, a CNI bridge of its own, a registry on 127.0.0.1),
// a busybox image and a large one (busybox plus incompressible files), each started twice
// per run (the first time with the shim's disk cache empty, the second with its disk
// cached), the two runtimes alternating.
package podbench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"confguest/build/conformance"
)

// Options configure one benchmark run.
type Options struct {
	conformance.Host
	OutDir   string // containerd's log and the pods' logs
	Runs     int    // pod starts of each kind (median)
	BigMiB   int    // MiB of files the large image adds to busybox
	IdlePods int    // idle pods of each runtime whose memory is measured at once (0: none)
	Log      io.Writer
	Out      io.Writer // the figures
}

// podTimeout bounds one pod's start (TCG boots take seconds to a minute on a loaded host).
const podTimeout = 5 * time.Minute

// idleSettle is how long the idle pods run before their memory is read: past the agent's
// idle release and the guest's boot-time work.
const idleSettle = 20 * time.Second

// Run starts the private runtime, measures and prints the figures, and stops it again.
func Run(ctx context.Context, o Options) (err error) {
	if o.Runs < 1 {
		return fmt.Errorf("runs %d: want at least 1", o.Runs)
	}
	step := func(format string, args ...any) { fmt.Fprintf(o.Log, "podbench: "+format+"\n", args...) }
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return err
	}
	// The shim's cache (its disk cache in disks/) is the benchmark's own, so that a first
	// start finds it empty whatever ran on this machine before.
	cacheDir, err := os.MkdirTemp("", "cgbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(cacheDir)
	ctrdLog := filepath.Join(o.OutDir, "containerd.log")
	rt, err := conformance.StartRuntime(ctx, conformance.RuntimeOptions{Host: o.Host,
		LogPath: ctrdLog, ShimCacheDir: cacheDir, Log: o.Log})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := rt.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	cri, err := dialCRI(rt.Endpoint)
	if err != nil {
		return err
	}
	defer cri.close()

	big := fmt.Sprintf("busybox+%dMiB", o.BigMiB)
	bigRef, err := pushBigImage(ctx, rt, o.BigMiB)
	if err != nil {
		return err
	}
	step("pulling the pod sandbox image, busybox and %s (%s)", big, bigRef)
	for _, ref := range []string{rt.Pause, rt.Busybox, bigRef} {
		if err := cri.pull(ctx, ref); err != nil {
			return err
		}
	}
	refs := map[string]string{busybox: rt.Busybox, big: bigRef}
	b := &bench{cri: cri, logRoot: filepath.Join(o.OutDir, "pods"), ctrdLog: ctrdLog, step: step}
	if err := os.RemoveAll(b.logRoot); err != nil {
		return err
	}

	// One unmeasured pod of each runtime first: the first pod of a containerd pays for
	// what every later one finds ready (the CNI bridge, the shim's KVM probe, page cache).
	for _, h := range []string{confguest, runc} {
		step("warm-up pod under %s", h)
		if _, err := b.start(ctx, h, "warmup-"+h, rt.Busybox); err != nil {
			return err
		}
	}
	var samples []sample
	for run := range o.Runs {
		// The disk cache is emptied before each run's first starts.
		if err := os.RemoveAll(filepath.Join(cacheDir, "disks")); err != nil {
			return err
		}
		handlers := []string{confguest, runc}
		if run%2 == 1 {
			handlers = []string{runc, confguest}
		}
		// Both first starts, then both second starts: the second starts the target
		// compares are adjacent in time.
		for _, second := range []bool{false, true} {
			for _, img := range []string{busybox, big} {
				for _, h := range handlers {
					s := sample{handler: h, image: img, second: second, run: run}
					podName := fmt.Sprintf("%s-%s-%d-%s", h, strings.ReplaceAll(strings.ToLower(img), "+", "-"), run, nth(second))
					if s.p, err = b.start(ctx, h, podName, refs[img]); err != nil {
						return err
					}
					if h == confguest {
						if s.disk, err = b.diskNote(s.p.logOffset); err != nil {
							return err
						}
					}
					step("run %d/%d: %s %s start under %s: %s s (runp %s, create %s, start %s, output %s)", run+1, o.Runs, img, nth(second), h,
						secs(s.p.total()), secs(s.p.runp), secs(s.p.create), secs(s.p.start), secs(s.p.output))
					samples = append(samples, s)
				}
			}
		}
	}
	printStarts(o.Out, samples, big, o.Runs)

	if o.IdlePods > 0 {
		mem, err := b.idleMemory(ctx, o.IdlePods, rt.Busybox)
		if err != nil {
			return err
		}
		printMemory(o.Out, mem, idleSettle)
	}
	return nil
}

// pushBigImage pushes the large image (the registry's busybox plus mib MiB of files) to
// the local registry and returns its reference.
func pushBigImage(ctx context.Context, rt *conformance.Runtime, mib int) (string, error) {
	bb, err := name.NewTag(rt.Busybox)
	if err != nil {
		return "", err
	}
	src, err := name.NewTag(rt.Registry()+"/"+bb.RepositoryStr()+":"+bb.TagStr(), name.Insecure)
	if err != nil {
		return "", err
	}
	base, err := remote.Image(src, remote.WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("busybox image from the local registry (%s): %w", src, err)
	}
	img, err := bigImage(base, mib)
	if err != nil {
		return "", err
	}
	ref := fmt.Sprintf("%s/confguest/podbench-%dmib:1", rt.Registry(), mib)
	if err := rt.Push(ctx, ref, img); err != nil {
		return "", err
	}
	return ref, nil
}

// bench is the state the measurements share.
type bench struct {
	cri     *criClient
	logRoot string
	ctrdLog string
	step    func(string, ...any)
}

// start starts one pod, waits for its first output and removes it again.
func (b *bench) start(ctx context.Context, handler, podName, ref string) (podStart, error) {
	fi, err := os.Stat(b.ctrdLog)
	if err != nil {
		return podStart{}, err
	}
	pctx, cancel := context.WithTimeout(ctx, podTimeout)
	defer cancel()
	p, err := b.cri.startPod(pctx, handler, podName, ref, b.logRoot)
	p.logOffset = fi.Size()
	if p.pod != "" {
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer rcancel()
		if rerr := b.cri.removePod(rctx, p.pod); rerr != nil && err == nil {
			err = rerr
		}
	}
	return p, err
}

// diskNote is the shim's note on the container disk in containerd's log after offset.
func (b *bench) diskNote(offset int64) (diskNote, error) {
	f, err := os.Open(b.ctrdLog)
	if err != nil {
		return diskNote{}, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return diskNote{}, err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return diskNote{}, err
	}
	return parseDiskNote(string(data))
}

// idleMemory starts n busybox pods of each runtime, alternating, lets them idle, reads
// their host memory and removes them.
func (b *bench) idleMemory(ctx context.Context, n int, ref string) (_ []podMemory, err error) {
	type pod struct{ handler, id string }
	var pods []pod
	defer func() {
		for _, p := range pods {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			if rerr := b.cri.removePod(rctx, p.id); rerr != nil && err == nil {
				err = rerr
			}
			cancel()
		}
	}()
	for i := range n {
		for _, h := range []string{confguest, runc} {
			b.step("idle pod %d/%d under %s", i+1, n, h)
			pctx, cancel := context.WithTimeout(ctx, podTimeout)
			p, err := b.cri.startPod(pctx, h, fmt.Sprintf("idle-%s-%d", h, i), ref, b.logRoot)
			cancel()
			if p.pod != "" {
				pods = append(pods, pod{h, p.pod})
			}
			if err != nil {
				return nil, err
			}
		}
	}
	b.step("letting %d pods idle for %s", len(pods), idleSettle)
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(idleSettle):
	}
	var out []podMemory
	for _, p := range pods {
		procs, err := podProcs("/proc", "containerd-shim-"+p.handler+"-v2", p.id)
		if err != nil {
			return nil, err
		}
		out = append(out, podMemory{handler: p.handler, procs: procs})
	}
	return out, nil
}
