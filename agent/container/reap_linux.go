package container

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// An exec that fails while its container dies can leave a child of the agent that nobody
// waits for: runc's nsexec forks its helpers with CLONE_PARENT, so the helper that joined the
// container's PID namespace (stage 2) and its parent (stage 1) are the agent's children,
// and when the exec fails before libcontainer learns their PIDs, only the exec's first
// process is reaped. A zombie inside a PID namespace keeps that namespace's init from
// finishing its exit (the kernel's zap_pid_ns_processes waits until every process of the
// namespace is reaped), so the container's init never exits, its wait never returns, and a
// pod whose probe exec raced its deletion could not be deleted. ReapOrphans reaps such
// children.

// orphanGrace is how long a child of the agent must stay a zombie, with no process of the
// manager waiting for it, before ReapOrphans reaps it: whoever waits for a child (a process's
// wait, libcontainer for the helpers whose PIDs it knows, the pod holder's Cmd) reaps it as
// soon as it exits, so an older zombie is one nobody will reap.
const orphanGrace = 2 * time.Second

// sweepDelay is how long after a SIGCHLD ReapOrphans looks at the agent's children. A
// process's wait or a helper's run reaps its child as the child exits, so by then a child
// still a zombie is most often one nobody waits for, and the SIGCHLDs of a busy stretch
// (several per container: its helpers' and its process's) share one look.
const sweepDelay = 200 * time.Millisecond

// waiters are the processes the manager waits for, by PID.
type waiters struct {
	mu    sync.Mutex
	procs map[int]*Process
}

// add records that p's wait reaps its PID, and forgets the processes reaped since.
func (w *waiters) add(p *Process) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.procs == nil {
		w.procs = map[int]*Process{}
	}
	for pid, q := range w.procs {
		if q.exited() {
			delete(w.procs, pid)
		}
	}
	w.procs[p.pid] = p
}

// waited reports whether a process of the manager that has not been reaped yet has pid.
func (w *waiters) waited(pid int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	p, ok := w.procs[pid]
	if ok && p.exited() {
		delete(w.procs, pid)
		return false
	}
	return ok
}

// ReapOrphans reaps, until ctx ends, the agent's children that stay zombies for orphanGrace
// while no process of the manager waits for them. It runs for the agent's lifetime.
func (m *Manager) ReapOrphans(ctx context.Context) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGCHLD)
	defer signal.Stop(sigs)
	o := orphans{procRoot: "/proc", parent: os.Getpid(), waited: m.waiting.waited, seen: map[zombie]time.Time{}}
	recheck := time.NewTimer(orphanGrace)
	defer recheck.Stop()
	armed := true // recheck runs
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sigs:
			if !armed {
				recheck.Reset(sweepDelay)
				armed = true
			}
			continue
		case <-recheck.C:
			armed = false
		}
		if !zombieChild() {
			clear(o.seen)
			continue
		}
		reaped, pending, err := o.sweep(time.Now())
		for _, z := range reaped {
			m.log.Warn("reaped a child nobody waited for (left by a failed exec)", "pid", z.pid)
		}
		if err != nil {
			m.log.Warn("look for orphaned children", "err", err)
		}
		if pending {
			recheck.Reset(orphanGrace)
			armed = true
		}
	}
}

// zombie is one exited, unreaped process: its PID and its start time (in clock ticks after
// boot), which tell a reused PID apart.
type zombie struct {
	pid   int
	start uint64
}

// orphans finds the zombie children of parent under procRoot and reaps those seen as
// zombies nobody waits for since orphanGrace.
type orphans struct {
	procRoot string
	parent   int
	waited   func(pid int) bool
	reap     func(pid int) error // nil: wait4 with WNOHANG
	seen     map[zombie]time.Time
}

// sweep reaps the zombies first seen orphanGrace before now, and reports those it reaped
// and whether some are still within their grace.
func (o *orphans) sweep(now time.Time) (reaped []zombie, pending bool, err error) {
	zs, err := zombieChildren(o.procRoot, o.parent)
	current := map[zombie]bool{}
	for _, z := range zs {
		if o.waited(z.pid) {
			continue
		}
		current[z] = true
		first, ok := o.seen[z]
		if !ok {
			o.seen[z] = now
			pending = true
			continue
		}
		if now.Sub(first) < orphanGrace {
			pending = true
			continue
		}
		if rerr := o.reapPID(z.pid); rerr != nil {
			err = fmt.Errorf("reap %d: %w", z.pid, rerr)
			continue
		}
		reaped = append(reaped, z)
		delete(current, z)
	}
	for z := range o.seen {
		if !current[z] {
			delete(o.seen, z)
		}
	}
	return reaped, pending, err
}

func (o *orphans) reapPID(pid int) error {
	if o.reap != nil {
		return o.reap(pid)
	}
	// Someone else may reap it at the same moment: then ECHILD, and it is gone all the same.
	if _, err := unix.Wait4(pid, nil, unix.WNOHANG, nil); err != nil && err != unix.ECHILD {
		return err
	}
	return nil
}

// zombieChild reports whether a child of the agent has exited and is not reaped yet, without
// reaping it (waitid with WNOWAIT): one system call, where zombieChildren reads the stat file
// of every process in the guest. It errs on the side of a look: an error other than "no
// children" answers true.
func zombieChild() bool {
	var info unix.Siginfo // the kernel leaves it zeroed when no child has exited
	err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	if err == unix.ECHILD {
		return false
	}
	return err != nil || info.Signo != 0
}

// zombieChildren lists the zombie children of parent, read from procRoot (/proc).
func zombieChildren(procRoot string, parent int) ([]zombie, error) {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var zs []zombie
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		st, ok := parseStat(string(b))
		if ok && st.state == "Z" && st.ppid == parent {
			zs = append(zs, zombie{pid: pid, start: st.start})
		}
	}
	return zs, nil
}

type procStat struct {
	state string
	ppid  int
	start uint64
}

// parseStat reads the state, parent PID and start time of /proc/PID/stat: after the command
// name in parentheses (which may itself hold spaces and parentheses) come state (field 3),
// ppid (4) and, as field 22, starttime.
func parseStat(s string) (procStat, bool) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return procStat{}, false
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, false
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procStat{}, false
	}
	return procStat{state: f[0], ppid: ppid, start: start}, true
}
