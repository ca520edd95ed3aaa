package launcher

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Phase names reported by --timings.
const (
	PhaseImageCheck  = "image check"
	PhaseDiskBuild   = "disk build"
	PhaseVMMStart    = "VMM start"
	PhaseBootToAgent = "boot to agent ready"
	// The two parts of PhaseBootToAgent, reported before it: the guest's boot until the
	// agent's ready line reaches the console, then the vsock connect and Version call.
	PhaseBootReadyLine  = "  ready line seen"
	PhaseBootConnect    = "  connect, Version"
	PhaseContainerStart = "container start"
	PhaseContainerRun   = "container run"
	PhaseTeardown       = "teardown"
)

// Timings records how long each phase of a launch took.
type Timings struct {
	mu     sync.Mutex
	start  time.Time
	phases []PhaseTime
}

// PhaseTime is one measured phase.
type PhaseTime struct {
	Name     string
	Duration time.Duration
}

// NewTimings starts the clock.
func NewTimings() *Timings { return &Timings{start: time.Now()} }

// Start begins phase name and returns the function that ends it. A nil Timings records
// nothing.
func (t *Timings) Start(name string) func() {
	if t == nil {
		return func() {}
	}
	begin := time.Now()
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.phases = append(t.phases, PhaseTime{name, time.Since(begin)})
	}
}

// Phases returns the recorded phases in the order they ended.
func (t *Timings) Phases() []PhaseTime {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]PhaseTime(nil), t.phases...)
}

// Print writes one line per phase and the total since NewTimings.
func (t *Timings) Print(w io.Writer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintln(w, "timings:")
	for _, p := range t.phases {
		fmt.Fprintf(w, "  %-20s %8.3fs\n", p.Name, p.Duration.Seconds())
	}
	fmt.Fprintf(w, "  %-20s %8.3fs\n", "total", time.Since(t.start).Seconds())
}
