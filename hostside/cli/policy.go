package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"confguest/agent/api/imagesig"
	"confguest/agent/api/policy"
	"confguest/hostside/image"
	"confguest/hostside/launcher"
)

func init() {
	register(command{
		name:    "policy",
		summary: "write a measured agent policy for a container (generate) or print its HOST_DATA (hash)",
		subs: []command{
			{name: "generate", summary: "write the policy that admits one container (agent/policy/README.md)", run: runPolicyGenerate},
			{name: "hash", summary: "print a policy's SHA-256: the HOST_DATA it binds to", run: func(_ context.Context, args []string, stdio Stdio) error {
				return runPolicyHash(args, stdio)
			}},
			{name: "seccomp-hash", summary: "print the hash of a seccomp profile that pins it in a policy entry", run: func(_ context.Context, args []string, stdio Stdio) error {
				return runSeccompHash(args, stdio)
			}},
		},
	})
}

// runSeccompHash prints the value of an entry's seccomp field that pins a
// profile: the hash of its canonical JSON (policy.SeccompHash). FILE is the
// profile itself (linux.seccomp of a spec) or a whole OCI spec.
func runSeccompHash(args []string, stdio Stdio) error {
	fs := newFlags("policy seccomp-hash", stdio)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("usage: confguest policy seccomp-hash PROFILE.json|config.json")
	}
	b, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("read seccomp profile: %w", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err == nil && spec.Linux != nil && spec.Linux.Seccomp != nil {
		fmt.Fprintln(stdio.Out, policy.SeccompHash(spec.Linux.Seccomp))
		return nil
	}
	var profile specs.LinuxSeccomp
	if err := json.Unmarshal(b, &profile); err != nil || profile.DefaultAction == "" {
		return fmt.Errorf("%s: not a seccomp profile (no defaultAction) nor a spec with linux.seccomp", fs.Arg(0))
	}
	fmt.Fprintln(stdio.Out, policy.SeccompHash(&profile))
	return nil
}

// runPolicyHash prints SHA-256 of a policy file's exact bytes, the value
// the VM must be launched with as host_data.
func runPolicyHash(args []string, stdio Stdio) error {
	fs := newFlags("policy hash", stdio)
	format := fs.String("format", "hex", "hex (Cloud Hypervisor host_data) or base64 (QEMU sev-snp-guest host-data)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("usage: confguest policy hash [--format hex|base64] POLICY.json")
	}
	doc, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("read policy: %w", err)
	}
	if _, err := policy.Parse(doc); err != nil {
		return fmt.Errorf("%s: %w: fix the policy, or the agent will refuse it after boot", fs.Arg(0), err)
	}
	h := policy.Hash(doc)
	switch *format {
	case "hex":
		fmt.Fprintln(stdio.Out, policy.HashHex(doc))
	case "base64":
		fmt.Fprintln(stdio.Out, base64.StdEncoding.EncodeToString(h[:]))
	default:
		return usagef("--format %q: want hex or base64", *format)
	}
	return nil
}

// generateFlags are the flags of confguest policy generate.
type generateFlags struct {
	rootfsDir, oci, pull, name, output string
	env, exec                          stringList
	signers                            stringList
	signedImage                        string
	tty, stdin, attestation, stats     bool
	shutdown, replace, getReport       bool
}

func runPolicyGenerate(ctx context.Context, args []string, stdio Stdio) error {
	fs := newFlags("policy generate", stdio)
	var f generateFlags
	fs.StringVar(&f.rootfsDir, "rootfs", "", "container rootfs: a directory")
	fs.StringVar(&f.oci, "oci", "", "container rootfs: an OCI image layout directory or a docker save archive")
	fs.StringVar(&f.pull, "pull", "", "container rootfs: an image reference to pull from a registry")
	fs.StringVar(&f.name, "name", "main", "name of the policy entry")
	fs.StringVar(&f.output, "o", "", "write the policy to this file (default: standard output)")
	fs.Var(&f.env, "env", "KEY=VALUE for the container, as confguest run --env (repeatable)")
	fs.Var(&f.exec, "exec", `allow exec of this command: a command line split at spaces, or a JSON array such as '["sh", "-c", "echo hi"]' (repeatable)`)
	fs.BoolVar(&f.tty, "t", false, "allow a terminal, as confguest run -t")
	fs.BoolVar(&f.stdin, "i", false, "allow standard input, as confguest run -i")
	fs.BoolVar(&f.attestation, "attestation", false, "give the container the workload evidence endpoint")
	fs.BoolVar(&f.stats, "stats", false, "allow the host to read container statistics")
	fs.BoolVar(&f.shutdown, "shutdown", true, "allow the host to shut the agent down (confguest run and stop need it)")
	fs.BoolVar(&f.replace, "replace-policy", false, "allow a later policy to replace this one")
	fs.BoolVar(&f.getReport, "get-report", true, "allow the host to ask for attestation reports (confguest verify --guest needs it; they are labelled host reports)")
	fs.Var(&f.signers, "signer", "pin the rootfs by signer instead of root hash: a public key (PEM, as cosign.pub) whose signed attestations the entry trusts (repeatable; needs --image)")
	fs.StringVar(&f.signedImage, "image", "", "with --signer: the image repository the signed statements must be about (registry/repository, as cosign names the subject)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	rootfs, err := f.signedRootfs()
	if err != nil {
		return err
	}
	var cfg v1.Config
	var layer string
	if rootfs == nil || f.rootfsDir != "" || f.oci != "" || f.pull != "" {
		src, err := rootfsSource(f.rootfsDir, f.oci, f.pull)
		if err != nil {
			return err
		}
		// The same disk confguest run builds: its verity root hash pins the rootfs (with
		// --signer only its image configuration is used).
		disk, err := buildTempDisk(ctx, src)
		if err != nil {
			return err
		}
		cfg, layer = disk.Config, disk.Verity.RootHash
	}
	p, err := launcher.ProcessFromImage(cfg, fs.Args(), f.env)
	if err != nil {
		return usagef("%v", err)
	}
	p.TTY, p.Stdin = f.tty, f.stdin
	// The spec confguest run and start send: its hostname is the container's ID.
	c := launcher.PolicyEntry(f.name, layer, launcher.ContainerSpec(p, containerID))
	if rootfs != nil {
		c.Rootfs = policy.Rootfs{Signed: rootfs}
	}
	doc, err := generatePolicy(f, c)
	if err != nil {
		return err
	}
	if f.output == "" {
		_, err = stdio.Out.Write(doc)
		return err
	}
	if err := os.WriteFile(f.output, doc, 0o644); err != nil {
		return fmt.Errorf("write policy: %w", err)
	}
	fmt.Fprintf(stdio.Err, "wrote %s\nHOST_DATA (confguest policy hash %s): %s\n", f.output, f.output, policy.HashHex(doc))
	return nil
}

// signedRootfs is the rootfs of --signer and --image, or nil without --signer.
func (f generateFlags) signedRootfs() (*policy.Signed, error) {
	if len(f.signers) == 0 {
		if f.signedImage != "" {
			return nil, usagef("--image names what --signer signs: give --signer KEY.pub")
		}
		return nil, nil
	}
	if f.signedImage == "" {
		return nil, usagef("--signer needs --image REPOSITORY: the image its statements must be about")
	}
	repo, err := name.NewRepository(f.signedImage)
	if err != nil {
		return nil, usagef("--image %q: not an image repository: %v", f.signedImage, err)
	}
	s := &policy.Signed{Image: policy.Match{Exact: repo.String()}}
	for _, k := range f.signers {
		b, err := os.ReadFile(k)
		if err != nil {
			return nil, fmt.Errorf("read --signer: %w", err)
		}
		if _, err := imagesig.ParsePublicKey(b); err != nil {
			return nil, fmt.Errorf("--signer %s: %w", k, err)
		}
		s.Keys = append(s.Keys, strings.TrimSpace(string(b))+"\n")
	}
	return s, nil
}

// generatePolicy writes a policy admitting exactly the container of entry c
// (plus the exec commands of f.exec), checked by the agent's own parser.
func generatePolicy(f generateFlags, c policy.Container) ([]byte, error) {
	c.Stdin, c.TTY, c.Attestation = f.stdin, f.tty, f.attestation
	for _, e := range f.exec {
		args, err := execArgs(e)
		if err != nil {
			return nil, err
		}
		// What confguest exec sends for this command without flags.
		ep, err := launcher.ProcessFromImage(v1.Config{WorkingDir: "/"}, args, nil)
		if err != nil {
			return nil, usagef("--exec %q: %v", e, err)
		}
		c.Exec = append(c.Exec, launcher.ExecRule(ep))
	}
	p := policy.Policy{
		Version:    policy.Version,
		Agent:      policy.AgentRules{Stats: f.stats, Shutdown: f.shutdown, ReplacePolicy: f.replace, GetReport: f.getReport},
		Containers: []policy.Container{c},
	}
	doc, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode policy: %w", err)
	}
	doc = append(doc, '\n')
	if _, err := policy.Parse(doc); err != nil {
		return nil, fmt.Errorf("generated policy: %w (use --name with [A-Za-z0-9_.-])", err)
	}
	return doc, nil
}

// execArgs reads an --exec value: a JSON array of strings (["sh", "-c", "echo hi"]), or a
// command line split at spaces.
func execArgs(e string) ([]string, error) {
	if t := strings.TrimSpace(e); strings.HasPrefix(t, "[") {
		var args []string
		if err := json.Unmarshal([]byte(t), &args); err != nil {
			return nil, usagef("--exec %q: not a JSON array of strings: %v", e, err)
		}
		if len(args) == 0 {
			return nil, usagef("--exec %q: give a command", e)
		}
		return args, nil
	}
	args := strings.Fields(e)
	if len(args) == 0 {
		return nil, usagef("--exec %q: give a command line", e)
	}
	return args, nil
}

// buildTempDisk builds the disk of src as confguest run does, in a temporary directory
// removed before it returns: the disk's parameters and image configuration remain.
func buildTempDisk(ctx context.Context, src image.Source) (image.Disk, error) {
	work, err := os.MkdirTemp("", "confguest-disk-")
	if err != nil {
		return image.Disk{}, fmt.Errorf("create work directory: %w", err)
	}
	defer os.RemoveAll(work)
	return image.BuildDisk(ctx, src, work, filepath.Join(work, "rootfs.img"))
}
