// Package policy is the document format of the agent's measured,
// default-deny policy: the types of the versioned JSON document, its
// parser and the SHA-256 that goes into HOST_DATA. It is part of the
// agent's API, so host tools (confguest policy, the launcher) share it
// with the guest. The evaluator and the gate that enforce a policy live in
// confguest/agent/policy; agent/policy/README.md documents the format with
// examples.
package policy

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync"

	"confguest/agent/api/imagesig"
)

// Version is the only policy format version this agent reads.
const Version = 1

// MaxSize bounds a policy document in bytes.
const MaxSize = 1 << 20

// Policy is a parsed policy document. Everything it does not allow is
// denied.
type Policy struct {
	Version    int         `json:"version"`
	Agent      AgentRules  `json:"agent"`
	Containers []Container `json:"containers"`
}

// AgentRules switches the calls that concern the whole agent rather than
// one container. All are off unless the policy turns them on.
type AgentRules struct {
	// Stats allows reading containers' cgroup statistics.
	Stats bool `json:"stats"`
	// Shutdown allows the host to stop the agent (and power the VM off).
	Shutdown bool `json:"shutdown"`
	// ReplacePolicy allows a later SetPolicy to replace this policy. The
	// replacement is then trusted because this measured policy says so.
	ReplacePolicy bool `json:"replace_policy"`
	// GetReport allows the host to ask for attestation reports. Their
	// REPORT_DATA names them host reports (confguest/agent/api/evidence),
	// so they can never pass for workload evidence. Before any policy is
	// installed GetReport is always allowed.
	GetReport bool `json:"get_report,omitempty"`
	// PodNetwork allows ConfigureNetwork: the host may give the guest's pod
	// a network interface (a virtio-net device the agent moves into the
	// pod's network namespace and configures as CNI did on the host). The
	// network is the host's like every device: workloads protect their
	// traffic themselves (TLS).
	PodNetwork bool `json:"pod_network,omitempty"`
}

// Container is one kind of container the host may create. A
// CreateContainer request is allowed when it matches every field of one
// entry; the container then lives under that entry's rules.
type Container struct {
	// Name identifies the entry in denials and logs ("containers[web]").
	Name   string `json:"name"`
	Rootfs Rootfs `json:"rootfs"`
	// Args must match the process arguments one to one.
	Args []Match `json:"args"`
	// Env lists allowed KEY=VALUE entries: each entry of the request must
	// match one of them. Entries the request leaves out are fine.
	Env []Match `json:"env"`
	// Cwd is the working directory ("" means "/").
	Cwd  string `json:"cwd"`
	User User   `json:"user"`
	// Capabilities pins each capability set of the init process; exec'd
	// processes may hold a subset of each set.
	Capabilities Capabilities `json:"capabilities"`
	// Mounts lists the mounts the spec may have, each matched exactly
	// (destination, type, source, options as a set, ID mappings).
	Mounts []Mount `json:"mounts"`
	// MaskedPaths and ReadonlyPaths must each be contained in the
	// spec's linux.maskedPaths and linux.readonlyPaths. Absent (null)
	// means DefaultMaskedPaths and DefaultReadonlyPaths; [] means none.
	MaskedPaths   []string `json:"masked_paths"`
	ReadonlyPaths []string `json:"readonly_paths"`
	// Seccomp pins linux.seccomp: "" means the spec has none;
	// "sha256:<hex>" the profile whose SeccompHash it is.
	Seccomp string `json:"seccomp,omitempty"`
	// NoNewPrivileges pins process.noNewPrivileges; an exec'd process
	// cannot turn it off.
	NoNewPrivileges bool `json:"no_new_privileges"`
	// Rlimits pins process.rlimits (as a set; none when empty). An exec'd
	// process has none of its own or exactly these.
	Rlimits []Rlimit `json:"rlimits,omitempty"`
	// OOMScoreAdj pins process.oomScoreAdj; absent allows none or 0 to
	// 1000 (which only makes the container likelier to be killed).
	OOMScoreAdj *int `json:"oom_score_adj,omitempty"`
	// Hostname must match the spec's hostname ("" by default).
	Hostname Match `json:"hostname"`
	// UIDMappings and GIDMappings, when given, require a user namespace
	// with exactly these mappings; without them a spec with a user
	// namespace or ID mappings is refused.
	UIDMappings []IDMapping `json:"uid_mappings,omitempty"`
	GIDMappings []IDMapping `json:"gid_mappings,omitempty"`
	// Sysctls lists the sysctls the spec may set, with their values. Only
	// sysctls of a namespace the container has of its own or shares with
	// its pod (NamespacedSysctl) can be listed: any other would change
	// the whole guest.
	Sysctls map[string]string `json:"sysctls,omitempty"`
	// GuestNetwork allows running in the guest's network namespace.
	// Every other namespace is private to the container or, with
	// PodNamespaces, the pod's.
	GuestNetwork bool `json:"guest_network"`
	// PodNamespaces lists the namespaces of the guest's pod the container
	// joins instead of having its own, by OCI type ("network", "ipc",
	// "uts", "pid"): exactly these, as a set (none when empty). The agent
	// creates them and sets their paths; the host never names one.
	PodNamespaces []string `json:"pod_namespaces,omitempty"`
	// Volumes lists, per mount destination, what the agent may mount there
	// beside the spec's mounts (CreateContainer volumes): files the host
	// copies in, or an emptyDir of the pod. A request may use any of them
	// (a subset); a volume at a destination not listed is refused.
	Volumes []Volume `json:"volumes,omitempty"`
	// ReadonlyRootfs refuses a spec whose root is not read-only.
	ReadonlyRootfs bool `json:"readonly_rootfs"`
	// Stdin allows writing to the container's standard input.
	Stdin bool `json:"stdin"`
	// TTY allows a terminal for the init process.
	TTY bool `json:"tty"`
	// Stdout and Stderr allow the host to read those streams (of the init
	// process and of exec'd processes). Unread output is dropped oldest
	// first, so a container never stalls on a refused reader.
	Stdout bool `json:"stdout"`
	Stderr bool `json:"stderr"`
	// Exec lists the commands the host may run in the container.
	Exec []Exec `json:"exec"`
	// Attestation gives the container the workload evidence endpoint.
	Attestation bool `json:"attestation"`
	// UpdateResources lists the groups of cgroup limits the host may
	// change while the container runs (UpdateContainer): any of
	// UpdateResourceGroups, each once. None when empty.
	UpdateResources []string `json:"update_resources,omitempty"`
}

// Rootfs is where a container's root filesystem comes from: exactly one
// of Layers (dm-verity root hashes of the layer images, hex),
// GuestDirectory (a directory on the guest's own verity root) or Signed
// (any image disk a trusted key signed).
type Rootfs struct {
	Layers         []string `json:"layers,omitempty"`
	GuestDirectory string   `json:"guest_directory,omitempty"`
	Signed         *Signed  `json:"signed,omitempty"`
}

// MaxSignerKeys bounds the keys of one signed rootfs.
const MaxSignerKeys = 16

// Signed admits the disk of any image whose statement one of Keys signed:
// the create request carries a DSSE envelope (rootfs_attestation) of the
// confguest disk predicate (confguest/agent/api/imagesig) whose subject
// Image matches and whose signed verity parameters and filesystem are
// exactly the request's block rootfs. A new image version signed by the
// same key runs under the same policy.
type Signed struct {
	// Keys are the trusted public keys, PEM (PKIX "PUBLIC KEY", as
	// cosign.pub): ECDSA P-256, Ed25519 or RSA.
	Keys []string `json:"keys"`
	// Image matches the statement subject's name: the image repository as
	// cosign names it (registry host and path, e.g.
	// "registry.example/team/app"), exactly or by {"pattern": "RE2"}.
	Image Match `json:"image"`

	keys []crypto.PublicKey // Keys, parsed by Parse
}

// PublicKeys returns the parsed Keys of a policy that Parse returned.
func (s *Signed) PublicKeys() []crypto.PublicKey { return s.keys }

func (s *Signed) check() error {
	if len(s.Keys) == 0 || len(s.Keys) > MaxSignerKeys {
		return fmt.Errorf("rootfs.signed.keys: %d keys, want 1 to %d", len(s.Keys), MaxSignerKeys)
	}
	s.keys = make([]crypto.PublicKey, len(s.Keys))
	for i, k := range s.Keys {
		pk, err := imagesig.ParsePublicKey([]byte(k))
		if err != nil {
			return fmt.Errorf("rootfs.signed.keys[%d]: %w", i, err)
		}
		s.keys[i] = pk
	}
	if s.Image.Exact == "" && s.Image.Pattern == "" {
		return errors.New(`rootfs.signed.image: empty: name the image repository, or {"pattern": "..."}`)
	}
	return nil
}

// User is the identity processes run as.
type User struct {
	UID            uint32   `json:"uid"`
	GID            uint32   `json:"gid"`
	AdditionalGIDs []uint32 `json:"additional_gids,omitempty"`
	// Umask pins process.user.umask (absent: the spec has none, and
	// the container gets libcontainer's 0022).
	Umask *uint32 `json:"umask,omitempty"`
}

// Mount is an allowed OCI mount.
type Mount struct {
	Destination string   `json:"destination"`
	Type        string   `json:"type"`
	Source      string   `json:"source"`
	Options     []string `json:"options,omitempty"`
	// UIDMappings and GIDMappings pin an idmapped mount's mappings
	// (none: the mount must have none).
	UIDMappings []IDMapping `json:"uid_mappings,omitempty"`
	GIDMappings []IDMapping `json:"gid_mappings,omitempty"`
}

// Exec is an allowed exec command. It runs as the container's user with
// at most the container's capabilities; each of its env entries must
// match the container's Env or the command's own Env.
type Exec struct {
	Args []Match `json:"args"`
	Env  []Match `json:"env,omitempty"`
	// Cwd is the working directory ("" means the container's).
	Cwd   string `json:"cwd,omitempty"`
	Stdin bool   `json:"stdin"`
	TTY   bool   `json:"tty"`
}

// Match matches one string: a JSON string matches exactly; an object
// {"pattern": "RE2"} matches when the whole string matches the regular
// expression.
type Match struct {
	Exact   string
	Pattern string // empty: exact
	re      *regexp.Regexp
}

// Matches reports whether s is allowed.
func (m Match) Matches(s string) bool {
	if m.re != nil {
		return m.re.MatchString(s)
	}
	return s == m.Exact
}

// MarshalJSON writes an exact match as a string, a pattern as an object.
func (m Match) MarshalJSON() ([]byte, error) {
	if m.Pattern != "" {
		return json.Marshal(struct {
			Pattern string `json:"pattern"`
		}{m.Pattern})
	}
	return json.Marshal(m.Exact)
}

// UnmarshalJSON reads a string or {"pattern": "..."}.
func (m *Match) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		*m = Match{}
		return json.Unmarshal(b, &m.Exact)
	}
	var p struct {
		Pattern *string `json:"pattern"`
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&p); err != nil {
		return fmt.Errorf("want a string or {\"pattern\": \"...\"}: %w", err)
	}
	if p.Pattern == nil || *p.Pattern == "" {
		return errors.New(`want a string or {"pattern": "..."} with a non-empty pattern`)
	}
	re, err := regexp.Compile(`^(?:` + *p.Pattern + `)$`)
	if err != nil {
		return fmt.Errorf("pattern %q: %w", *p.Pattern, err)
	}
	*m = Match{Pattern: *p.Pattern, re: re}
	return nil
}

// Exactly returns matchers for exactly these strings.
func Exactly(ss ...string) []Match {
	out := make([]Match, len(ss))
	for i, s := range ss {
		out[i] = Match{Exact: s}
	}
	return out
}

// Hash returns the SHA-256 of a policy document's exact bytes: the value
// that goes into HOST_DATA.
func Hash(doc []byte) [32]byte { return sha256.Sum256(doc) }

// HashHex is Hash in lower-case hex (64 characters), as Cloud
// Hypervisor's host_data and confguest policy hash print it.
func HashHex(doc []byte) string {
	h := Hash(doc)
	return hex.EncodeToString(h[:])
}

// Parse reads and checks a policy document. Unknown fields, trailing
// data, an unknown version and every rule of the format are errors that
// wrap ErrInvalidPolicy and name the field.
func Parse(doc []byte) (*Policy, error) {
	if len(doc) > MaxSize {
		return nil, fmt.Errorf("policy: %w: %d bytes, at most %d", ErrInvalidPolicy, len(doc), MaxSize)
	}
	d := json.NewDecoder(bytes.NewReader(doc))
	d.DisallowUnknownFields()
	var p Policy
	if err := d.Decode(&p); err != nil {
		return nil, fmt.Errorf("policy: %w: %w", ErrInvalidPolicy, err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("policy: %w: data after the JSON document", ErrInvalidPolicy)
	}
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("policy: %w: %w", ErrInvalidPolicy, err)
	}
	return &p, nil
}

var (
	namePattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`) })
	hashPattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9a-f]{64}$`) })
	capPattern  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^CAP_[A-Z_]{1,32}$`) })
)

func (p *Policy) check() error {
	if p.Version != Version {
		return fmt.Errorf("version %d: this agent reads version %d", p.Version, Version)
	}
	seen := map[string]bool{}
	for i := range p.Containers {
		c := &p.Containers[i]
		if !namePattern().MatchString(c.Name) {
			return fmt.Errorf("containers[%d].name %q: use 1-64 characters of [A-Za-z0-9_.-]", i, c.Name)
		}
		if seen[c.Name] {
			return fmt.Errorf("containers[%d].name %q: used twice", i, c.Name)
		}
		seen[c.Name] = true
		if err := c.check(); err != nil {
			return fmt.Errorf("containers[%s].%w", c.Name, err)
		}
	}
	return nil
}

func (c *Container) check() error {
	r := c.Rootfs
	n := 0
	for _, given := range []bool{len(r.Layers) > 0, r.GuestDirectory != "", r.Signed != nil} {
		if given {
			n++
		}
	}
	if n != 1 {
		return errors.New("rootfs: give exactly one of layers, guest_directory and signed")
	}
	switch {
	case r.GuestDirectory != "":
		if !absClean(r.GuestDirectory) {
			return fmt.Errorf("rootfs.guest_directory %q: want a clean absolute path", r.GuestDirectory)
		}
	case r.Signed != nil:
		if err := r.Signed.check(); err != nil {
			return err
		}
	}
	for i, l := range r.Layers {
		if !hashPattern().MatchString(l) {
			return fmt.Errorf("rootfs.layers[%d] %q: want a dm-verity root hash, 64 lower-case hex digits", i, l)
		}
	}
	if len(c.Args) == 0 {
		return errors.New("args: empty: list the command and its arguments")
	}
	if c.Cwd != "" && !absClean(c.Cwd) {
		return fmt.Errorf("cwd %q: want a clean absolute path", c.Cwd)
	}
	for _, set := range c.Capabilities.Sets() {
		for i, capName := range set.Caps {
			if !capPattern().MatchString(capName) {
				return fmt.Errorf("capabilities.%s[%d] %q: want a name such as CAP_NET_BIND_SERVICE", set.Name, i, capName)
			}
		}
	}
	for i, m := range c.Mounts {
		if !absClean(m.Destination) {
			return fmt.Errorf("mounts[%d].destination %q: want a clean absolute path", i, m.Destination)
		}
		if m.Type == "" {
			return fmt.Errorf("mounts[%d].type: empty", i)
		}
		if err := checkMappings(fmt.Sprintf("mounts[%d]", i), m.UIDMappings, m.GIDMappings); err != nil {
			return err
		}
	}
	if err := c.checkSpecFields(); err != nil {
		return err
	}
	if err := checkPodNamespaces(c.PodNamespaces); err != nil {
		return err
	}
	if err := checkVolumes(c.Volumes); err != nil {
		return err
	}
	for k := range c.Sysctls {
		if k == "" || strings.ContainsAny(k, "/ \x00") {
			return fmt.Errorf("sysctls %q: want a dotted name such as net.ipv4.ip_forward", k)
		}
		if _, ok := NamespacedSysctl(k); !ok {
			return fmt.Errorf("sysctls %q: %w", k, ErrSysctlNotNamespaced)
		}
	}
	if err := checkUpdateResources(c.UpdateResources); err != nil {
		return err
	}
	for i, e := range c.Exec {
		if len(e.Args) == 0 {
			return fmt.Errorf("exec[%d].args: empty: list the command and its arguments", i)
		}
		if e.Cwd != "" && !absClean(e.Cwd) {
			return fmt.Errorf("exec[%d].cwd %q: want a clean absolute path", i, e.Cwd)
		}
	}
	return nil
}

func absClean(p string) bool { return strings.HasPrefix(p, "/") && path.Clean(p) == p }

// WorkingDir is the container's working directory with the default ("/")
// applied.
func (c *Container) WorkingDir() string {
	if c.Cwd == "" {
		return "/"
	}
	return c.Cwd
}

// PodNamespaceTypes are the values of a container's pod_namespaces: the
// namespaces a pod's containers may share, by their OCI type names.
var PodNamespaceTypes = []string{"network", "ipc", "uts", "pid"}

func checkPodNamespaces(types []string) error {
	seen := map[string]bool{}
	for i, t := range types {
		if !slices.Contains(PodNamespaceTypes, t) {
			return fmt.Errorf("pod_namespaces[%d] %q: a pod shares only %q", i, t, PodNamespaceTypes)
		}
		if seen[t] {
			return fmt.Errorf("pod_namespaces[%d] %q: listed twice", i, t)
		}
		seen[t] = true
	}
	return nil
}

// Volume kinds: what a container entry lets the host mount at a destination.
const (
	// VolumeFiles is a file or directory tree whose content the host sends.
	VolumeFiles = "files"
	// VolumeEmptyDir is an emptyDir of the pod, created empty in the guest.
	VolumeEmptyDir = "empty_dir"
)

// Volume allows one kind of volume at one mount destination.
type Volume struct {
	Destination string `json:"destination"`
	// Kind is VolumeFiles or VolumeEmptyDir.
	Kind string `json:"kind"`
	// ReadBack lets the host read what the container wrote into a files volume that
	// is one file (ReadVolume: its termination log).
	ReadBack bool `json:"read_back,omitempty"`
}

func checkVolumes(vs []Volume) error {
	seen := map[string]bool{}
	for i, v := range vs {
		if !absClean(v.Destination) || v.Destination == "/" {
			return fmt.Errorf("volumes[%d].destination %q: want a clean absolute path other than /", i, v.Destination)
		}
		if v.Kind != VolumeFiles && v.Kind != VolumeEmptyDir {
			return fmt.Errorf("volumes[%d].kind %q: want %q or %q", i, v.Kind, VolumeFiles, VolumeEmptyDir)
		}
		if v.ReadBack && v.Kind != VolumeFiles {
			return fmt.Errorf("volumes[%d].read_back: only a files volume is read back", i)
		}
		if seen[v.Destination] {
			return fmt.Errorf("volumes[%d].destination %q: listed twice", i, v.Destination)
		}
		seen[v.Destination] = true
	}
	return nil
}
