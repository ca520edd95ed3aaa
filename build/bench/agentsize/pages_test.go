package main

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

func TestPageSetOverlap(t *testing.T) {
	p := pageSet{0b0000_0101} // pages 0 and 2
	tests := []struct {
		name      string
		off, size uint64
		want      uint64
	}{
		{"inside a touched page", 100, 50, 50},
		{"inside an untouched page", pageSize + 10, 100, 0},
		{"across touched, untouched, touched", pageSize - 10, pageSize + 20, 20},
		{"past the bitmap", 8 * pageSize, pageSize, 0},
		{"empty", 5, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.overlap(tc.off, tc.size); got != tc.want {
				t.Errorf("overlap(%d, %d) = %d, want %d", tc.off, tc.size, got, tc.want)
			}
		})
	}
	if got := p.count(); got != 2 {
		t.Errorf("count() = %d, want 2", got)
	}
}

func TestReadPages(t *testing.T) {
	tests := []struct {
		name, text string
		want       string // hex of the bitmap; empty: an error
	}{
		{"console line", "[  3.1] x\nconfguest-agent: startup pages: 0f01\r\nnext\n", "0f01"},
		{"bare hex", "ff00\n", "ff00"},
		{"not hex", "confguest-agent: startup pages: xyz\n", ""},
		{"empty", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "pages")
			if err := os.WriteFile(path, []byte(tc.text), 0o644); err != nil {
				t.Fatal(err)
			}
			p, err := readPages(path)
			if tc.want == "" {
				if err == nil {
					t.Errorf("readPages(%q) = %x, want an error", tc.text, []byte(p))
				}
				return
			}
			if err != nil || hex.EncodeToString(p) != tc.want {
				t.Errorf("readPages(%q) = %x, %v, want %s", tc.text, []byte(p), err, tc.want)
			}
		})
	}
}
