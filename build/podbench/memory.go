package podbench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// procMem is one host process of a pod and its proportional set size.
type procMem struct {
	pid     int
	name    string // comm
	pss     pss
	cmdline []string
}

// pss is a process's proportional set size in KiB, and its parts: anonymous memory,
// file pages, and shared memory (for the VMM: the guest's RAM, a memfd it shares with
// vhost-device-vsock). Kernels before 5.x give the total only.
type pss struct {
	total, anon, file, shmem int64
}

// podProcs lists the processes of the pod whose shim serves group id: the shim (its
// command line holds "-id <id>" and names shim) and every process below it (for
// confguest the VMM and vhost-device-vsock, for runc the pod's pause and container
// processes), with their PSS from /proc/PID/smaps_rollup. Shared pages count once over
// all processes that map them, so the sum of PSS is the pod's share of the host's memory:
// the guest's memory, shared by QEMU and vhost-device-vsock, is not counted twice.
func podProcs(proc, shim, id string) ([]procMem, error) {
	ents, err := os.ReadDir(proc)
	if err != nil {
		return nil, err
	}
	parent := map[int]int{}
	root := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(proc, e.Name(), "stat"))
		if err != nil {
			continue // gone
		}
		ppid, err := parsePPID(string(stat))
		if err != nil {
			return nil, err
		}
		parent[pid] = ppid
		args := cmdline(proc, pid)
		if len(args) > 0 && filepath.Base(args[0]) == shim && hasArgPair(args, "-id", id) {
			if root != 0 {
				return nil, fmt.Errorf("two %s processes serve %s: %d and %d", shim, id, root, pid)
			}
			root = pid
		}
	}
	if root == 0 {
		return nil, fmt.Errorf("no %s process serves %s", shim, id)
	}
	var out []procMem
	for pid := range parent {
		if !descends(parent, pid, root) {
			continue
		}
		m, err := smapsPSS(filepath.Join(proc, strconv.Itoa(pid), "smaps_rollup"))
		if err != nil {
			return nil, fmt.Errorf("process %d of pod %s: %w", pid, id, err)
		}
		comm, _ := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "comm"))
		out = append(out, procMem{pid: pid, name: strings.TrimSpace(string(comm)), pss: m, cmdline: cmdline(proc, pid)})
	}
	return out, nil
}

// descends reports whether pid is root or below it.
func descends(parent map[int]int, pid, root int) bool {
	for seen := 0; pid > 1 && seen < len(parent); seen++ {
		if pid == root {
			return true
		}
		pid = parent[pid]
	}
	return false
}

// parsePPID reads the parent PID from /proc/PID/stat ("pid (comm) state ppid ..."; comm
// may hold spaces and parentheses, so the fields count from the last ')').
func parsePPID(stat string) (int, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat %q: no ')'", stat)
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 2 {
		return 0, fmt.Errorf("/proc stat %q: too few fields", stat)
	}
	return strconv.Atoi(f[1])
}

func cmdline(proc string, pid int) []string {
	b, _ := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "cmdline"))
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

func hasArgPair(args []string, flag, value string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag && args[i+1] == value {
			return true
		}
	}
	return false
}

// smapsPSS reads the Pss lines of an smaps_rollup file.
func smapsPSS(path string) (pss, error) {
	f, err := os.Open(path)
	if err != nil {
		return pss{}, err
	}
	defer f.Close()
	return parsePSS(f)
}

func parsePSS(r io.Reader) (pss, error) {
	var m pss
	found := false
	fields := map[string]*int64{"Pss:": &m.total, "Pss_Anon:": &m.anon, "Pss_File:": &m.file, "Pss_Shmem:": &m.shmem}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[2] != "kB" || fields[f[0]] == nil {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return pss{}, fmt.Errorf("smaps_rollup line %q: %w", sc.Text(), err)
		}
		*fields[f[0]] = n
		found = found || f[0] == "Pss:"
	}
	if err := sc.Err(); err != nil {
		return pss{}, err
	}
	if !found {
		return pss{}, fmt.Errorf("smaps_rollup has no Pss line (kernel older than 4.14?)")
	}
	return m, nil
}

// vmMemory is the value of the -m option of a QEMU command line ("" if none).
func vmMemory(procs []procMem) string {
	for _, p := range procs {
		if len(p.cmdline) == 0 || !strings.HasPrefix(filepath.Base(p.cmdline[0]), "qemu-system") {
			continue
		}
		for i := 0; i+1 < len(p.cmdline); i++ {
			if p.cmdline[i] == "-m" {
				return p.cmdline[i+1]
			}
		}
	}
	return ""
}
