package conformance

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

func TestParseSkips(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    []skipEntry
		wantErr bool
	}{
		{"entries and comments", "# c\n\nspec a | why a\n  spec b [Conformance] |  why b \n",
			[]skipEntry{{"spec a", "why a"}, {"spec b [Conformance]", "why b"}}, false},
		{"no reason", "spec a\n", nil, true},
		{"empty reason", "spec a | \n", nil, true},
		{"empty spec", " | why\n", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSkips([]byte(tc.in))
			if (err != nil) != tc.wantErr || !tc.wantErr && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseSkips(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// The committed skip list parses, and every entry gives a reason.
func TestSkipListCommitted(t *testing.T) {
	skips, err := parseSkips(skipList)
	if err != nil {
		t.Fatal(err)
	}
	if len(skips) == 0 {
		t.Fatal("skips.txt lists no spec")
	}
}

func TestSkipRegexp(t *testing.T) {
	re := regexp.MustCompile(skipRegexp([]skipEntry{{"runtime should support HostIpc is true", "r"}, {"image with digest [Conformance]", "r"}}))
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"[k8s.io] Security Context NamespaceOption runtime should support HostIpc is true", true},
		{"[k8s.io] Security Context NamespaceOption runtime should support HostIpc is false", false},
		{"[k8s.io] Image Manager public image with digest [Conformance]", true},
		{"[k8s.io] Image Manager public image with digest [Conformance] too", false},
		{"[k8s.io] Image Manager public image with digestX[Conformance]", false},
	} {
		if got := re.MatchString(tc.name); got != tc.want {
			t.Errorf("skip regexp %q matches %q = %v, want %v", re, tc.name, got, tc.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	f, err := os.Open("testdata/report.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := summarize(f, []skipEntry{{"spec listed", "r"}, {"spec nowhere", "r"}})
	if err != nil {
		t.Fatal(err)
	}
	counts := [6]int{got.Total, got.Passed, got.Failed, got.SkippedAtRunTime, got.Listed, got.Unselected}
	if want := [6]int{6, 1, 2, 1, 1, 1}; counts != want {
		t.Errorf("summarize: total, passed, failed, skipped, listed, unselected = %v, want %v", counts, want)
	}
	if want := []string{"spec nowhere"}; !reflect.DeepEqual(got.UnusedSkips, want) {
		t.Errorf("summarize: unused skips %q, want %q", got.UnusedSkips, want)
	}
	var b strings.Builder
	got.Print(&b, "confguest")
	for _, want := range []string{
		"6 specs, ran 3: 1 passed, 2 failed; 1 skipped at run time, 1 skipped on purpose",
		"failed: [k8s.io] A spec fails\n      Expected true to be false second line\n",
		"failed: [k8s.io] A spec times out\n",
		"skipped: [k8s.io] A spec skips itself\n      no user namespaces",
		`"spec nowhere"`,
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("Print = %q, want it to contain %q", b.String(), want)
		}
	}
}
