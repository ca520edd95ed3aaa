package main

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

// Invocations that must fail before any source is fetched or built, each with a message
// that names the input and what to do.
func TestRunRejectsBadInvocations(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "no output", args: []string{"-cache", dir}, wantErr: "pass -o FILE"},
		{name: "positional argument", args: []string{"-o", filepath.Join(dir, "bzImage"), "extra"}, wantErr: `unexpected arguments ["extra"]`},
		{name: "unknown flag", args: []string{"-frobnicate"}, wantErr: "flag provided but not defined"},
		{name: "missing fragment", args: []string{"-o", filepath.Join(dir, "bzImage"), "-fragment", filepath.Join(dir, "nope.config")}, wantErr: "reading fragment"},
		{name: "source without package description", args: []string{"-o", filepath.Join(dir, "bzImage"), "-source", dir}, wantErr: "fetch it with build/debpin.sh"},
		{name: "fetcher missing", args: []string{"-o", filepath.Join(dir, "bzImage"), "-debpin", filepath.Join(dir, "debpin.sh")}, wantErr: "run from the repository root, or pass -source DIR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(context.Background(), tc.args, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("run(%q) = %v, want an error containing %q", tc.args, err, tc.wantErr)
			}
		})
	}
}
