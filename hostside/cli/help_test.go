package cli

import (
	"bytes"
	"context"
	"sort"
	"strings"
	"testing"
)

// TestHelpExitsZero: --help, -h and help print usage on stderr and exit 0 for confguest, for
// every command and for every subcommand; a command of subcommands without one exits 2.
func TestHelpExitsZero(t *testing.T) {
	var cases [][]string
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, h := range []string{"--help", "-h"} {
		cases = append(cases, []string{h})
		for _, n := range names {
			cases = append(cases, []string{n, h})
			for _, s := range commands[n].subs {
				cases = append(cases, []string{n, s.name, h})
			}
		}
	}
	cases = append(cases, []string{"help"}, []string{"policy", "help"})
	for _, args := range cases {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := Main(context.Background(), args, Stdio{In: strings.NewReader(""), Out: &out, Err: &errOut})
			if code != 0 || !strings.Contains(strings.ToLower(errOut.String()), "usage") {
				t.Errorf("confguest %q = %d, stderr %q; want 0 and a usage", args, code, errOut.String())
			}
		})
	}
	for n, c := range commands {
		if len(c.subs) == 0 {
			continue
		}
		var errOut bytes.Buffer
		if code := Main(context.Background(), []string{n}, Stdio{In: strings.NewReader(""), Out: &errOut, Err: &errOut}); code != 2 || !strings.Contains(errOut.String(), c.subs[0].name) {
			t.Errorf("confguest %s = %d, output %q; want 2 and the subcommands", n, code, errOut.String())
		}
	}
}
