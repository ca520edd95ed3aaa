package server

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	agentv1 "confguest/agent/api/v1"
)

// procSelfStatus is where the agent reads its own memory figures.
const procSelfStatus = "/proc/self/status"

// readAgentStats reads the agent's memory figures from a /proc/<pid>/status
// file.
func readAgentStats(path string) (*agentv1.AgentStats, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read agent memory: %w", err)
	}
	return parseAgentStats(string(data))
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
