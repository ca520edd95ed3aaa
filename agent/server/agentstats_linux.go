package server

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	agentv1 "confguest/agent/api/v1/wire"
)

// procSelfStatus is where the agent reads its own memory figures.
const procSelfStatus = "/proc/self/status"

// readAgentStats reads the agent's memory figures from a /proc/<pid>/status
// file and counts what the agent holds in the running system.
func readAgentStats(path string) (*agentv1.AgentStats, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read agent memory: %w", err)
	}
	st, err := parseAgentStats(string(data))
	if err != nil {
		return nil, err
	}
	if err := countHeld(st, systemRoots); err != nil {
		return nil, err
	}
	return st, nil
}

// statRoots are where countHeld looks: procfs, sysfs and the cgroup2 mount.
type statRoots struct {
	proc, sys, cgroup string
}

var systemRoots = statRoots{proc: "/proc", sys: "/sys", cgroup: "/sys/fs/cgroup"}

// countHeld fills in the counts of what a leak in the agent would grow:
// its open file descriptors and goroutines, and in the system its mounts,
// device-mapper devices, cgroups and processes.
func countHeld(st *agentv1.AgentStats, r statRoots) error {
	fds, err := os.ReadDir(filepath.Join(r.proc, "self", "fd"))
	if err != nil {
		return fmt.Errorf("count open files: %w", err)
	}
	mountinfo, err := os.ReadFile(filepath.Join(r.proc, "self", "mountinfo"))
	if err != nil {
		return fmt.Errorf("count mounts: %w", err)
	}
	blocks, err := os.ReadDir(filepath.Join(r.sys, "block"))
	if err != nil {
		return fmt.Errorf("count device-mapper devices: %w", err)
	}
	procs, err := os.ReadDir(r.proc)
	if err != nil {
		return fmt.Errorf("count processes: %w", err)
	}
	cgroups := 0
	err = filepath.WalkDir(r.cgroup, func(path string, d fs.DirEntry, err error) error {
		switch {
		case errors.Is(err, fs.ErrNotExist) && path != r.cgroup:
			return nil // removed while we walked
		case err != nil:
			return err
		case d.IsDir():
			cgroups++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("count cgroups: %w", err)
	}
	st.OpenFds = uint32(len(fds))
	st.Goroutines = uint32(runtime.NumGoroutine())
	st.Mounts = uint32(strings.Count(string(mountinfo), "\n"))
	st.DmDevices = uint32(countEntries(blocks, func(name string) bool { return strings.HasPrefix(name, "dm-") }))
	st.Cgroups = uint32(cgroups)
	st.Processes = uint32(countEntries(procs, func(name string) bool {
		_, err := strconv.ParseUint(name, 10, 32)
		return err == nil && !kernelThread(filepath.Join(r.proc, name, "stat"))
	}))
	return nil
}

// kernelThread reports whether the /proc/<pid>/stat at path is kthreadd's
// (PID 2) or one of its children: the kernel starts and ends those on its
// own, so they are not counted as the system's processes.
func kernelThread(path string) bool {
	stat, err := os.ReadFile(path)
	if err != nil {
		return false // gone: counted as it was listed
	}
	s := string(stat)
	pid, _, _ := strings.Cut(s, " ")
	// The command name in parentheses may hold spaces; the fields after
	// it are the state, then the parent's PID.
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return pid == "2" || len(fields) > 1 && fields[1] == "2"
}

// countEntries counts the entries whose names match.
func countEntries(ents []fs.DirEntry, match func(name string) bool) int {
	n := 0
	for _, e := range ents {
		if match(e.Name()) {
			n++
		}
	}
	return n
}

// parseAgentStats reads VmRSS, RssAnon, RssFile, VmHWM (in kB) and
// Threads from the text of /proc/<pid>/status. Each must be present.
func parseAgentStats(status string) (*agentv1.AgentStats, error) {
	st := &agentv1.AgentStats{}
	fields := map[string]func(v uint64){
		"VmRSS":   func(v uint64) { st.RssBytes = v << 10 },
		"RssAnon": func(v uint64) { st.RssAnonBytes = v << 10 },
		"RssFile": func(v uint64) { st.RssFileBytes = v << 10 },
		"VmHWM":   func(v uint64) { st.PeakRssBytes = v << 10 },
		"Threads": func(v uint64) { st.Threads = uint32(min(v, 1<<32-1)) },
	}
	for line := range strings.Lines(status) {
		name, value, ok := strings.Cut(line, ":")
		set := fields[name]
		if !ok || set == nil {
			continue
		}
		value = strings.TrimSpace(value)
		if name != "Threads" {
			var kB bool
			value, kB = strings.CutSuffix(value, " kB")
			if !kB {
				return nil, fmt.Errorf("agent memory: %s: %q is not in kB", name, value)
			}
		}
		v, err := strconv.ParseUint(value, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("agent memory: %s: %w", name, err)
		}
		set(v)
		delete(fields, name)
	}
	if len(fields) > 0 {
		missing := make([]string, 0, len(fields))
		for name := range fields {
			missing = append(missing, name)
		}
		slices.Sort(missing)
		return nil, fmt.Errorf("agent memory: %s missing from %s: the kernel is older than 4.5", strings.Join(missing, ", "), procSelfStatus)
	}
	return st, nil
}
