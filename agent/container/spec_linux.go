package container

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"confguest/agent/libct"
)

// checkSpec checks the parts of an OCI runtime spec (decoded once at the
// RPC edge, package request) the agent relies on before any resource is
// created. bindDirs are the directories bind-mount sources must lie in.
func checkSpec(s *specs.Spec, bindDirs []string) error {
	if s == nil {
		return fieldErr("spec_json", "empty: send the container's OCI config.json")
	}
	if s.Process == nil {
		return fieldErr("process", "missing: the spec must say what to run")
	}
	if err := checkProcess("process", s.Process); err != nil {
		return err
	}
	if s.Linux == nil {
		return fieldErr("linux", "missing: the spec must have a linux section")
	}
	if s.Hooks != nil && (len(s.Hooks.Prestart)+len(s.Hooks.CreateRuntime)+len(s.Hooks.CreateContainer)+
		len(s.Hooks.StartContainer)+len(s.Hooks.Poststart)+len(s.Hooks.Poststop) > 0) {
		return fieldErr("hooks", "not supported: the agent does not run host-supplied hooks")
	}
	for i, ns := range s.Linux.Namespaces {
		if ns.Path != "" {
			return fieldErr(fmt.Sprintf("linux.namespaces[%d].path", i), "%q: joining existing namespaces is not allowed", ns.Path)
		}
	}
	for i, m := range s.Mounts {
		field := fmt.Sprintf("mounts[%d]", i)
		if !filepath.IsAbs(m.Destination) {
			return fieldErr(field+".destination", "%q is not an absolute path", m.Destination)
		}
		if isBind(m) {
			if err := checkBindSource(m.Source, bindDirs); err != nil {
				return fieldErr(field+".source", "%v", err)
			}
		}
	}
	return nil
}

func isBind(m specs.Mount) bool {
	return m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
}

// checkBindSource allows a bind source only inside one of dirs, the paths
// the agent owns. The path must be clean and absolute; symlinks in it are
// resolved by libcontainer inside the source's own tree, so a lexical
// check on a clean path is what keeps it under the agent's directories.
func checkBindSource(src string, dirs []string) error {
	if !filepath.IsAbs(src) || filepath.Clean(src) != src {
		return fmt.Errorf("bind source %q must be a clean absolute path", src)
	}
	resolved, err := filepath.EvalSymlinks(src)
	if err != nil {
		return fmt.Errorf("bind source %q: %w", src, err)
	}
	for _, d := range dirs {
		if resolved == d || strings.HasPrefix(resolved, d+"/") {
			return nil
		}
	}
	return fmt.Errorf("bind source %q is outside the agent's directories %q", src, dirs)
}

// checkExecProcess checks an OCI process (for ExecProcess, decoded at
// the RPC edge).
func checkExecProcess(p *specs.Process) error {
	if p == nil {
		return fieldErr("process_json", "empty: send an OCI process object")
	}
	return checkProcess("process", p)
}

func checkProcess(field string, p *specs.Process) error {
	if len(p.Args) == 0 || p.Args[0] == "" {
		return fieldErr(field+".args", "empty: name the program to run")
	}
	for i, a := range p.Args {
		if strings.ContainsRune(a, 0) {
			return fieldErr(fmt.Sprintf("%s.args[%d]", field, i), "contains a NUL byte")
		}
	}
	if !filepath.IsAbs(p.Cwd) {
		return fieldErr(field+".cwd", "%q is not an absolute path", p.Cwd)
	}
	for i, e := range p.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" || strings.ContainsRune(e, 0) {
			return fieldErr(fmt.Sprintf("%s.env[%d]", field, i), "%q is not KEY=value", e)
		}
	}
	for i, r := range p.Rlimits {
		if _, ok := libct.Rlimits[r.Type]; !ok {
			return fieldErr(fmt.Sprintf("%s.rlimits[%d].type", field, i), "unknown rlimit %q", r.Type)
		}
		if r.Soft > r.Hard {
			return fieldErr(fmt.Sprintf("%s.rlimits[%d]", field, i), "soft limit %d above hard limit %d", r.Soft, r.Hard)
		}
	}
	if p.ConsoleSize != nil && (p.ConsoleSize.Width > 0xffff || p.ConsoleSize.Height > 0xffff) {
		return fieldErr(field+".consoleSize", "larger than 65535")
	}
	return nil
}
