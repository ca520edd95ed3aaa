package qemutests

import (
	"strings"
	"testing"

	agentv1 "confguest/agent/api/v1"
	"confguest/hostside/vmm"
)

// TestSoakVerdict feeds the soak's bound check figures with an injected leak of each kind
// the soak looks for, and figures within the bounds: a leak must fail it, noise must not.
// It needs no guest.
func TestSoakVerdict(t *testing.T) {
	const checkpoint, cycles = 100, 1000
	snap := func(change func(*soakSnapshot)) soakSnapshot {
		s := soakSnapshot{
			agent: &agentv1.AgentStats{RssBytes: 30 << 20, Threads: 8, OpenFds: 12, Goroutines: 20,
				Mounts: 15, DmDevices: 1, Cgroups: 3, Processes: 2},
			hostProcs: 2, hostFDs: 40, hostSockets: 6, selfFDs: 10, selfSockets: 2, selfRoutines: 9,
			runFiles: 5, runBytes: 1 << 20, consoleBytes: 20 << 10,
		}
		if change != nil {
			change(&s)
		}
		return s
	}
	before := snap(nil)
	atCheckpoint := snap(func(s *soakSnapshot) {
		s.agent.OpenFds, s.agent.Goroutines, s.agent.Cgroups = 14, 23, 4 // warmed up
		s.consoleBytes += checkpoint * 420
	})
	tests := []struct {
		name  string
		after func(*soakSnapshot)
		want  []string // one leak line containing each; none when empty
	}{
		{"steady", func(s *soakSnapshot) {
			s.agent.OpenFds, s.agent.Goroutines, s.agent.Cgroups = 14, 23, 4
			s.agent.RssBytes += 3 << 20 // scavenger noise under 4 MiB
			s.agent.Threads += 2
			s.consoleBytes = vmm.LogKeep + 8<<10 // trimmed
		}, nil},
		{"agent fd leak of one", func(s *soakSnapshot) {
			s.agent.OpenFds, s.agent.Goroutines, s.agent.Cgroups = 15, 23, 4
		}, []string{"agent open fds grew by 1 from cycle 100 to cycle 1000 (14 to 15), bound 0"}},
		{"goroutine and RSS leak", func(s *soakSnapshot) {
			s.agent.OpenFds, s.agent.Goroutines, s.agent.Cgroups = 14, 923, 4
			s.agent.RssBytes += 900 * 4 << 10 * 2 // two pages per cycle
		}, []string{"agent goroutines grew by 900", "agent RSS KiB grew by 7200"}},
		{"a mount left behind", func(s *soakSnapshot) {
			s.agent.OpenFds, s.agent.Goroutines, s.agent.Cgroups = 14, 23, 4
			s.agent.Mounts++
		}, []string{"guest mounts grew by 1", "guest mounts is 16 after the last cycle, 15 before the first"}},
		{"a host process and a run dir file left behind", func(s *soakSnapshot) {
			s.agent.OpenFds, s.agent.Goroutines, s.agent.Cgroups = 14, 23, 4
			s.hostProcs++
			s.runFiles++
		}, []string{"host VMM processes is 3 after the last cycle", "host run dir files is 6 after the last cycle"}},
		{"console log not trimmed", func(s *soakSnapshot) {
			s.agent.OpenFds, s.agent.Goroutines, s.agent.Cgroups = 14, 23, 4
			s.consoleBytes += cycles * 420
		}, []string{"host console log bytes grew by 378000"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rows, leaks := soakVerdict(before, atCheckpoint, snap(tc.after), checkpoint, cycles)
			if len(rows) != len(soakCounters)+1 {
				t.Errorf("soakVerdict gave %d table rows, want a header and %d counters", len(rows), len(soakCounters))
			}
			if len(tc.want) == 0 && len(leaks) > 0 {
				t.Errorf("soakVerdict(%s) = leaks %q, want none", tc.name, leaks)
			}
			for _, w := range tc.want {
				found := false
				for _, l := range leaks {
					found = found || strings.Contains(l, w)
				}
				if !found {
					t.Errorf("soakVerdict(%s) = leaks %q, want one containing %q", tc.name, leaks, w)
				}
			}
		})
	}
}
