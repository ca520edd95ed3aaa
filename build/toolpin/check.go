package toolpin

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// Machine is what a check asks of the build machine. System returns the real one; tests
// give canned answers.
type Machine struct {
	// DpkgQuery runs dpkg-query with args and returns its standard output, also when it
	// exits non-zero because some of the asked packages or paths are unknown.
	DpkgQuery func(ctx context.Context, args ...string) ([]byte, error)
	// Resolve finds a command in the build's PATH and follows its symlinks.
	Resolve func(program string) (string, error)
	// GoVersion is what `go env GOVERSION` prints.
	GoVersion func(ctx context.Context) (string, error)
}

// System is the machine this process runs on, with commands looked up in path (the PATH
// the build gives its tools; the process's own PATH when empty).
func System(path string) Machine {
	return Machine{
		DpkgQuery: func(ctx context.Context, args ...string) ([]byte, error) {
			var stderr bytes.Buffer
			cmd := exec.CommandContext(ctx, "dpkg-query", args...)
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			var exit *exec.ExitError
			if errors.As(err, &exit) && exit.ExitCode() == 1 {
				return out, nil // some names unknown: the caller sees them missing
			}
			if err != nil {
				return nil, fmt.Errorf("dpkg-query (this build runs on Debian): %w: %s", err, strings.TrimSpace(stderr.String()))
			}
			return out, nil
		},
		Resolve: func(program string) (string, error) {
			p, err := LookPath(program, path)
			if err != nil {
				return "", err
			}
			return filepath.EvalSymlinks(p)
		},
		GoVersion: func(ctx context.Context) (string, error) {
			cmd := exec.CommandContext(ctx, "go", "env", "GOVERSION")
			cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
			out, err := cmd.Output()
			if err != nil {
				return "", fmt.Errorf("go env GOVERSION: %w", err)
			}
			return strings.TrimSpace(string(out)), nil
		},
	}
}

// LookPath finds program in the directories of path (exec.LookPath's search when path is
// empty).
func LookPath(program, path string) (string, error) {
	if path == "" {
		return exec.LookPath(program)
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, program)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in %s", program, path)
}

// MismatchError lists every way the machine differs from the lock.
type MismatchError struct {
	Lock     string
	Problems []string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("this machine's build tools differ from %s, so the image would not be the published one:\n  %s\n"+
		"install the pinned versions (make setup installs the Debian ones), or change the pins and the published digests "+
		"in one commit (README: \"Reproduce the published measurement\")",
		e.Lock, strings.Join(e.Problems, "\n  "))
}

// Check compares the machine with pins and returns a *MismatchError naming, for each tool
// that differs, the version found and the pin.
func Check(ctx context.Context, lock string, pins []Pin, m Machine) error {
	var problems []string
	var debs []Pin
	for _, p := range pins {
		if p.Package == GoToolchain {
			got, err := m.GoVersion(ctx)
			switch {
			case err != nil:
				problems = append(problems, fmt.Sprintf("go: %v; pinned %s (%s)", err, p.Version, p.Use))
			case got != p.Version:
				problems = append(problems, fmt.Sprintf("go: %s found, pinned %s (%s)", got, p.Version, p.Use))
			}
			continue
		}
		debs = append(debs, p)
	}
	if len(debs) > 0 {
		more, err := checkDebian(ctx, debs, m)
		if err != nil {
			return err
		}
		problems = append(problems, more...)
	}
	if len(problems) > 0 {
		return &MismatchError{Lock: lock, Problems: problems}
	}
	return nil
}

// checkDebian compares installed package versions with the pins and checks that each pinned
// program the build runs is a file of its pinned package (not another package's, through an
// alternative, or an unpackaged file earlier in PATH).
func checkDebian(ctx context.Context, pins []Pin, m Machine) ([]string, error) {
	args := []string{"-W", "-f=${Package}\t${Version}\t${db:Status-Abbrev}\n"}
	for _, p := range pins {
		args = append(args, p.Package)
	}
	out, err := m.DpkgQuery(ctx, args...)
	if err != nil {
		return nil, err
	}
	installed := ParseVersions(out)
	var problems []string
	var owned []Pin
	for _, p := range pins {
		switch got := installed[p.Package]; {
		case got == "":
			problems = append(problems, fmt.Sprintf("%s: not installed, pinned %s (%s)", p.Package, p.Version, p.Use))
		case got != p.Version:
			problems = append(problems, fmt.Sprintf("%s: version %s installed, pinned %s (%s)", p.Package, got, p.Version, p.Use))
		default:
			owned = append(owned, p)
		}
	}

	type program struct{ name, path, want string }
	var progs []program
	var paths []string
	for _, p := range owned {
		for _, name := range p.Programs {
			path, err := m.Resolve(name)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v; pinned to %s %s", name, err, p.Package, p.Version))
				continue
			}
			progs = append(progs, program{name, path, p.Package})
			paths = append(paths, dpkgPaths(path)...)
		}
	}
	if len(progs) == 0 {
		return problems, nil
	}
	out, err = m.DpkgQuery(ctx, append([]string{"-S"}, paths...)...)
	if err != nil {
		return nil, err
	}
	owners := ParseOwners(out)
	for _, pr := range progs {
		var got []string
		for _, path := range dpkgPaths(pr.path) {
			got = append(got, owners[path]...)
		}
		switch {
		case len(got) == 0:
			problems = append(problems, fmt.Sprintf("%s: %s belongs to no Debian package, pinned to %s", pr.name, pr.path, pr.want))
		case !slices.Contains(got, pr.want):
			problems = append(problems, fmt.Sprintf("%s: %s belongs to %s, pinned to %s", pr.name, pr.path, strings.Join(got, ", "), pr.want))
		}
	}
	return problems, nil
}

// dpkgPaths lists the names dpkg may know a resolved file by: on merged-/usr systems
// /usr/bin/sed is the file Debian ships as /bin/sed.
func dpkgPaths(path string) []string {
	for _, dir := range []string{"/usr/bin/", "/usr/sbin/", "/usr/lib/"} {
		if strings.HasPrefix(path, dir) {
			return []string{path, strings.TrimPrefix(path, "/usr")}
		}
	}
	return []string{path}
}

// ParseVersions reads `dpkg-query -W -f='${Package}\t${Version}\t${db:Status-Abbrev}\n'`
// output: the version of each installed package (status "ii").
func ParseVersions(out []byte) map[string]string {
	v := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 3 || strings.TrimSpace(f[2]) != "ii" {
			continue
		}
		v[f[0]] = f[1]
	}
	return v
}

// ParseOwners reads `dpkg-query -S PATH...` output ("pkg[:arch][, pkg...]: path"): the
// packages (without architecture) that own each path.
func ParseOwners(out []byte) map[string][]string {
	owners := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		pkgs, path, ok := strings.Cut(sc.Text(), ": ")
		if !ok || strings.HasPrefix(pkgs, "diversion by") {
			continue
		}
		for _, p := range strings.Split(pkgs, ", ") {
			name, _, _ := strings.Cut(strings.TrimSpace(p), ":")
			owners[path] = append(owners[path], name)
		}
	}
	return owners
}
