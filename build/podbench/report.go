package podbench

import (
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Runtime handlers measured, and the images.
const (
	confguest = "confguest"
	runc      = "runc"
	busybox   = "busybox"
)

// sample is one measured pod start.
type sample struct {
	handler string
	image   string // busybox or the large image's label
	second  bool   // the second start of this image in this run (its disk cached)
	run     int
	p       podStart
	disk    diskNote // confguest only: the shim's note on the container's disk
}

// diskNote is what the shim logged about a container disk: whether the disk cache had it,
// how long its key took (for a CRI rootfs: the digest of the whole tree) and then the disk
// (a hit: link and verify the whole entry; a miss: build and store it).
type diskNote struct {
	found bool
	hit   bool
	key   time.Duration
	disk  time.Duration
}

// The shim's progress line about a disk (hostside/image, options.cached).
var diskNoteRE = regexp.MustCompile(`disk (taken from|built into) the disk cache \S+ \(key [0-9a-f]+, computed in ([0-9.]+[a-zµ]+); (?:linked and verified|built and stored) in ([0-9.]+[a-zµ]+)\)`)

// parseDiskNote finds the first note on a container disk in log (containerd's log, which
// holds the shims' log lines).
func parseDiskNote(log string) (diskNote, error) {
	m := diskNoteRE.FindStringSubmatch(log)
	if m == nil {
		return diskNote{}, nil
	}
	key, err := time.ParseDuration(m[2])
	if err != nil {
		return diskNote{}, fmt.Errorf("shim disk note %q: %w", m[0], err)
	}
	disk, err := time.ParseDuration(m[3])
	if err != nil {
		return diskNote{}, fmt.Errorf("shim disk note %q: %w", m[0], err)
	}
	return diskNote{found: true, hit: m[1] == "taken from", key: key, disk: disk}, nil
}

// medianOf is the median of what f picks from the samples that match (the lower middle
// one of an even count), and how many there were.
func medianOf(samples []sample, match func(sample) bool, f func(sample) time.Duration) (time.Duration, int) {
	var ds []time.Duration
	for _, s := range samples {
		if match(s) {
			ds = append(ds, f(s))
		}
	}
	if len(ds) == 0 {
		return 0, 0
	}
	slices.Sort(ds)
	return ds[(len(ds)-1)/2], len(ds)
}

// medianRatio is the median over runs of num/den, each from the one sample of a run that
// matches it (so each ratio compares starts made minutes apart, not across the whole
// benchmark), and how many runs had both.
func medianRatio(samples []sample, num, den func(sample) bool) (float64, int) {
	byRun := map[int][2]time.Duration{}
	for _, s := range samples {
		r := byRun[s.run]
		if num(s) {
			r[0] = s.p.total()
		}
		if den(s) {
			r[1] = s.p.total()
		}
		byRun[s.run] = r
	}
	var rs []float64
	for _, r := range byRun {
		if r[0] > 0 && r[1] > 0 {
			rs = append(rs, float64(r[0])/float64(r[1]))
		}
	}
	if len(rs) == 0 {
		return 0, 0
	}
	slices.Sort(rs)
	return rs[(len(rs)-1)/2], len(rs)
}

func is(handler, image string, second bool) func(sample) bool {
	return func(s sample) bool { return s.handler == handler && s.image == image && s.second == second }
}

func total(s sample) time.Duration { return s.p.total() }

func nth(second bool) string {
	if second {
		return "second"
	}
	return "first"
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }

// printStarts writes the pod start figures: the medians per image, start and runtime
// handler, the ratios confguest/runc and second start of the large image/second start of
// busybox, and where confguest's time goes.
func printStarts(w io.Writer, samples []sample, big string, runs int) {
	fmt.Fprintf(w, "\npod start: RunPodSandbox to the container's first output line, median of %d runs (s)\n", runs)
	fmt.Fprintf(w, "%-16s %-7s %10s %8s %15s %15s\n", "image", "start", "confguest", "runc", "confguest/runc", "(per run)")
	for _, img := range []string{busybox, big} {
		for _, second := range []bool{false, true} {
			cg, _ := medianOf(samples, is(confguest, img, second), total)
			rc, _ := medianOf(samples, is(runc, img, second), total)
			ratio := "-"
			if rc > 0 {
				ratio = fmt.Sprintf("%.2f", float64(cg)/float64(rc))
			}
			per, _ := medianRatio(samples, is(confguest, img, second), is(runc, img, second))
			fmt.Fprintf(w, "%-16s %-7s %10s %8s %15s %15.2f\n", img, nth(second), secs(cg), secs(rc), ratio, per)
		}
	}
	for _, h := range []string{confguest, runc} {
		b, _ := medianOf(samples, is(h, big, true), total)
		s, _ := medianOf(samples, is(h, busybox, true), total)
		per, n := medianRatio(samples, is(h, big, true), is(h, busybox, true))
		if s > 0 {
			fmt.Fprintf(w, "%s: second start of %s / second start of busybox = %.2f (ratio of medians), %.2f (median of %d runs' ratios)",
				h, big, float64(b)/float64(s), per, n)
			if h == confguest {
				fmt.Fprint(w, "; target <= 1.20")
			}
			fmt.Fprintln(w)
		}
	}

	fmt.Fprintf(w, "\nconfguest, where the time goes (medians, s): RunPodSandbox boots the VM; CreateContainer only records the\n"+
		"container in containerd; StartContainer creates the task: the shim takes or builds the container's disk (key: for\n"+
		"a CRI rootfs the digest of the whole tree; disk: a hit links and verifies the whole cached disk, a miss builds and\n"+
		"stores it), then (rest) hot-adds it, admits it to the pod's policy and creates and starts the container in the guest\n")
	fmt.Fprintf(w, "%-16s %-7s %8s %8s %8s %8s %8s %8s %8s\n", "image", "start", "runp", "create", "start", "  key", "  disk", "  rest", "output")
	for _, img := range []string{busybox, big} {
		for _, second := range []bool{false, true} {
			m := is(confguest, img, second)
			col := func(f func(sample) time.Duration) string { d, _ := medianOf(samples, m, f); return secs(d) }
			notes := col(func(s sample) time.Duration { return s.disk.key })
			disk := col(func(s sample) time.Duration { return s.disk.disk })
			rest := col(func(s sample) time.Duration { return s.p.start - s.disk.key - s.disk.disk })
			if !allNoted(samples, m) {
				notes, disk, rest = "?", "?", "?"
			}
			fmt.Fprintf(w, "%-16s %-7s %8s %8s %8s %8s %8s %8s %8s\n", img, nth(second),
				col(func(s sample) time.Duration { return s.p.runp }), col(func(s sample) time.Duration { return s.p.create }),
				col(func(s sample) time.Duration { return s.p.start }), notes, disk, rest,
				col(func(s sample) time.Duration { return s.p.output }))
		}
	}
	if hits := cacheState(samples); hits != "" {
		fmt.Fprintln(w, hits)
	}
}

// allNoted reports whether every matching sample has the shim's disk note.
func allNoted(samples []sample, match func(sample) bool) bool {
	for _, s := range samples {
		if match(s) && !s.disk.found {
			return false
		}
	}
	return true
}

// cacheState says which confguest starts found their disk in the cache against what
// the benchmark meant (first: empty cache; second: cached), when any differs.
func cacheState(samples []sample) string {
	var odd []string
	for _, s := range samples {
		if s.handler == confguest && s.disk.found && s.disk.hit != s.second {
			odd = append(odd, fmt.Sprintf("run %d %s %s start: cache hit %t", s.run, s.image, nth(s.second), s.disk.hit))
		}
	}
	if len(odd) == 0 {
		return ""
	}
	return "unexpected disk cache state: " + strings.Join(odd, "; ")
}

// podMemory is the host memory of one idle pod.
type podMemory struct {
	handler string
	procs   []procMem
}

func (m podMemory) sum() pss {
	var n pss
	for _, p := range m.procs {
		n.total += p.pss.total
		n.anon += p.pss.anon
		n.file += p.pss.file
		n.shmem += p.pss.shmem
	}
	return n
}

func mib(kib int64) string { return fmt.Sprintf("%.1f", float64(kib)/1024) }

// printMemory writes each idle pod's PSS, summed, by part and by process name.
func printMemory(w io.Writer, pods []podMemory, settle time.Duration) {
	if len(pods) == 0 {
		return
	}
	fmt.Fprintf(w, "\nhost memory per idle pod (PSS from /proc/PID/smaps_rollup of the pod's shim and every process below it,\n"+
		"%d pods of each runtime running at once, %s after the last container started; MiB)\n", len(pods)/2, settle)
	for _, m := range pods {
		byName := map[string]int64{}
		var names []string
		for _, p := range m.procs {
			if _, ok := byName[p.name]; !ok {
				names = append(names, p.name)
			}
			byName[p.name] += p.pss.total
		}
		slices.Sort(names)
		var parts []string
		for _, n := range names {
			parts = append(parts, n+" "+mib(byName[n]))
		}
		vm := ""
		if mem := vmMemory(m.procs); mem != "" {
			vm = " (VM -m " + mem + ")"
		}
		t := m.sum()
		fmt.Fprintf(w, "%-9s %7s%s: %s; anonymous %s, file %s, shared memory %s\n", m.handler, mib(t.total), vm,
			strings.Join(parts, ", "), mib(t.anon), mib(t.file), mib(t.shmem))
	}
}
