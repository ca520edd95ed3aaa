package guestimage

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// pinnedPackages reads build/packages.lock: "suite package version sha256" lines.
func pinnedPackages(lockFile string, uses map[string]string) ([]DebianPackage, error) {
	f, err := os.Open(lockFile)
	if err != nil {
		return nil, fmt.Errorf("read package pins: %w", err)
	}
	defer f.Close()
	var pkgs []DebianPackage
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 4 {
			return nil, fmt.Errorf("%s:%d: want \"suite package version sha256\", got %q", lockFile, line, text)
		}
		use, ok := uses[fields[1]]
		if !ok {
			continue
		}
		pkgs = append(pkgs, DebianPackage{Suite: fields[0], Name: fields[1], Version: fields[2], SHA256: fields[3], Use: use})
	}
	return pkgs, sc.Err()
}
