//go:build !benchdirect

package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// The published agent has no test modes: "bench-direct" (built only with
// -tags benchdirect) and any other positional argument is refused before
// anything is served.
func TestNoTestModes(t *testing.T) {
	if len(testModes) != 0 {
		t.Fatalf("testModes = %v in a build without test tags, want none", testModes)
	}
	for _, args := range [][]string{{"bench-direct"}, {"bench-direct", "-n", "1"}, {"-listen", "unix:/nonexistent/x", "extra"}} {
		err := run(context.Background(), args, io.Discard, io.Discard)
		if err == nil || !(strings.Contains(err.Error(), "unexpected arguments") || strings.Contains(err.Error(), "flag provided but not defined")) {
			t.Errorf("run(%q) = %v, want an unexpected-arguments or unknown-flag error", args, err)
		}
	}
}
