package policy

import (
	"os"
	"strings"
	"testing"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// edit returns doc with old replaced by new exactly once.
func edit(t testing.TB, doc []byte, old, new string) []byte {
	t.Helper()
	if strings.Count(string(doc), old) != 1 {
		t.Fatalf("test document has %d copies of %q, want 1", strings.Count(string(doc), old), old)
	}
	return []byte(strings.Replace(string(doc), old, new, 1))
}
