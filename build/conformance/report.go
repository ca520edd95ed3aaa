package conformance

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"
)

// skipEntry is one spec skipped on purpose.
type skipEntry struct {
	spec   string // the spec's own text (its It), as critest names it
	reason string
}

// parseSkips reads the skip list: "spec text | reason" lines, '#' comments.
func parseSkips(b []byte) ([]skipEntry, error) {
	var out []skipEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		spec, reason, ok := strings.Cut(line, " | ")
		if !ok || strings.TrimSpace(spec) == "" || strings.TrimSpace(reason) == "" {
			return nil, fmt.Errorf("skip list line %d: want \"spec text | reason\", got %q", n, line)
		}
		out = append(out, skipEntry{strings.TrimSpace(spec), strings.TrimSpace(reason)})
	}
	return out, sc.Err()
}

// skipRegexp is the -ginkgo.skip expression that skips exactly the listed specs: each
// spec's text at the end of its full name.
func skipRegexp(skips []skipEntry) string {
	var alts []string
	for _, s := range skips {
		alts = append(alts, regexp.QuoteMeta(s.spec)+"$")
	}
	return strings.Join(alts, "|")
}

// specReport is what is read of one spec of a ginkgo v2 JSON report.
type specReport struct {
	ContainerHierarchyTexts []string
	LeafNodeText            string
	LeafNodeType            string
	State                   string
	RunTime                 time.Duration
	Failure                 struct{ Message string }
}

func (s specReport) name() string {
	return strings.Join(append(append([]string{}, s.ContainerHierarchyTexts...), s.LeafNodeText), " ")
}

// Spec is one spec's outcome.
type Spec struct {
	Name    string
	State   string // passed, failed, skipped (at run time), listed (skip list), unselected
	Message string // failure or skip message, first line
	RunTime time.Duration
}

// Summary counts a critest run.
type Summary struct {
	Total, Passed, Failed, SkippedAtRunTime, Listed, Unselected int
	Specs                                                       []Spec
	UnusedSkips                                                 []string // entries of the skip list no spec has
	Wall                                                        time.Duration
}

// Ran is the number of specs that ran to a result.
func (s Summary) Ran() int { return s.Passed + s.Failed }

// summarize reads a ginkgo v2 JSON report (-ginkgo.json-report) of critest.
func summarize(r io.Reader, skips []skipEntry) (Summary, error) {
	var suites []struct{ SpecReports []specReport }
	if err := json.NewDecoder(r).Decode(&suites); err != nil {
		return Summary{}, fmt.Errorf("read ginkgo's JSON report: %w", err)
	}
	listed := map[string]bool{}
	for _, s := range skips {
		listed[s.spec] = false
	}
	var sum Summary
	for _, suite := range suites {
		for _, r := range suite.SpecReports {
			if r.LeafNodeType != "It" {
				if failed(r.State) { // a suite node failed: count it, it fails the run
					sum.Specs = append(sum.Specs, Spec{Name: r.LeafNodeType, State: "failed", Message: firstLine(r.Failure.Message)})
					sum.Failed++
				}
				continue
			}
			sum.Total++
			sp := Spec{Name: r.name(), RunTime: r.RunTime, Message: firstLine(r.Failure.Message)}
			_, isListed := listed[r.LeafNodeText]
			switch {
			case r.State == "passed":
				sp.State = "passed"
				sum.Passed++
			case failed(r.State):
				sp.State = "failed"
				sum.Failed++
			case isListed:
				sp.State = "listed"
				listed[r.LeafNodeText] = true
				sum.Listed++
			case r.Failure.Message != "":
				sp.State = "skipped"
				sum.SkippedAtRunTime++
			default:
				sp.State = "unselected"
				sum.Unselected++
			}
			sum.Specs = append(sum.Specs, sp)
		}
	}
	for s, seen := range listed {
		if !seen {
			sum.UnusedSkips = append(sum.UnusedSkips, s)
		}
	}
	sort.Strings(sum.UnusedSkips)
	sort.Slice(sum.Specs, func(i, j int) bool { return sum.Specs[i].Name < sum.Specs[j].Name })
	return sum, nil
}

func failed(state string) bool {
	switch state {
	case "failed", "panicked", "timedout", "interrupted", "aborted":
		return true
	}
	return false
}

// firstLine is the start of a failure message on one line: gomega's messages spread
// "Expected <value> to ..." over several lines.
func firstLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 240 {
		s = s[:240] + "..."
	}
	return s
}

// Print writes the counts and the failing specs.
func (s Summary) Print(w io.Writer, handler string) {
	fmt.Fprintf(w, "conformance: runtime handler %s: %d specs, ran %d: %d passed, %d failed; %d skipped at run time, %d skipped on purpose (skip list), %d not selected (benchmarks, FOCUS); wall time %v\n",
		handler, s.Total, s.Ran(), s.Passed, s.Failed, s.SkippedAtRunTime, s.Listed, s.Unselected, s.Wall.Round(time.Second))
	for _, st := range []string{"failed", "skipped"} {
		for _, sp := range s.Specs {
			if sp.State == st {
				fmt.Fprintf(w, "  %s: %s\n      %s\n", st, sp.Name, sp.Message)
			}
		}
	}
	for _, u := range s.UnusedSkips {
		fmt.Fprintf(w, "  skip list entry names no spec of this critest: %q (build/conformance/skips.txt)\n", u)
	}
}
