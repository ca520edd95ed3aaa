package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Capabilities are the capability sets of a container's init process,
// each pinned: the request's set must hold exactly these names (order and
// repetition aside). A set left out is empty, as is every set of a
// request without process.capabilities: the agent never lets a container
// keep its own capabilities.
//
// A JSON array (the format before sets were pinned one by one) reads as
// bounding, effective and permitted equal to the list, inheritable and
// ambient empty: the sets runc and containerd give a container.
type Capabilities struct {
	Bounding    []string `json:"bounding,omitempty"`
	Effective   []string `json:"effective,omitempty"`
	Inheritable []string `json:"inheritable,omitempty"`
	Permitted   []string `json:"permitted,omitempty"`
	Ambient     []string `json:"ambient,omitempty"`
}

// CapabilitySet is one named capability set.
type CapabilitySet struct {
	Name string // bounding, effective, inheritable, permitted, ambient
	Caps []string
}

// Sets returns the five sets by name, in the OCI spec's order.
func (c Capabilities) Sets() []CapabilitySet {
	return []CapabilitySet{
		{"bounding", c.Bounding}, {"effective", c.Effective}, {"inheritable", c.Inheritable},
		{"permitted", c.Permitted}, {"ambient", c.Ambient},
	}
}

// UnmarshalJSON reads the object of sets, or the older single list.
func (c *Capabilities) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		var list []string
		if err := json.Unmarshal(b, &list); err != nil {
			return fmt.Errorf("want {\"bounding\": [...], ...} or a list of names: %w", err)
		}
		*c = Capabilities{Bounding: list, Effective: list, Permitted: list}
		return nil
	}
	type plain Capabilities
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var p plain
	if err := d.Decode(&p); err != nil {
		return fmt.Errorf("want {\"bounding\": [...], \"effective\": [...], \"inheritable\": [...], \"permitted\": [...], \"ambient\": [...]}: %w", err)
	}
	*c = Capabilities(p)
	return nil
}

// IDMapping maps a range of IDs of a user namespace (or an idmapped
// mount) to the IDs outside it.
type IDMapping struct {
	ContainerID uint32 `json:"container_id"`
	HostID      uint32 `json:"host_id"`
	Size        uint32 `json:"size"`
}

// Rlimit is one process resource limit (process.rlimits).
type Rlimit struct {
	Type string `json:"type"` // RLIMIT_NOFILE, ...
	Hard uint64 `json:"hard"`
	Soft uint64 `json:"soft"`
}

// DefaultMaskedPaths and DefaultReadonlyPaths are the paths of runc's
// default spec (`runc spec`): an entry without masked_paths or
// readonly_paths requires the spec to mask (make read-only) at least these.
var (
	DefaultMaskedPaths = []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"}
	DefaultReadonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// RequiredMaskedPaths returns the paths the spec must mask: the entry's,
// or DefaultMaskedPaths when it gives none.
func (c *Container) RequiredMaskedPaths() []string {
	if c.MaskedPaths == nil {
		return DefaultMaskedPaths
	}
	return c.MaskedPaths
}

// RequiredReadonlyPaths returns the paths the spec must make read-only:
// the entry's, or DefaultReadonlyPaths when it gives none.
func (c *Container) RequiredReadonlyPaths() []string {
	if c.ReadonlyPaths == nil {
		return DefaultReadonlyPaths
	}
	return c.ReadonlyPaths
}

// SeccompPrefix starts a seccomp value pinned by hash.
const SeccompPrefix = "sha256:"

// SeccompHash is how an entry pins a seccomp profile: "sha256:" and the
// SHA-256, in hex, of the profile's canonical JSON, which is Go's
// encoding/json encoding of the decoded specs.LinuxSeccomp (runtime-spec
// version in go.mod): fields in the type's order, empty optional fields
// left out, no spaces. Two profiles that decode to the same value (and so
// install the same filter) have the same hash, however they were written.
func SeccompHash(s *specs.LinuxSeccomp) string {
	b, err := json.Marshal(s)
	if err != nil {
		// Unreachable: the type holds only strings, integers and lists of them.
		panic(fmt.Sprintf("encode seccomp profile: %v", err))
	}
	sum := sha256.Sum256(b)
	return SeccompPrefix + hex.EncodeToString(sum[:])
}

var rlimitPattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^RLIMIT_[A-Z]{1,16}$`) })

// checkSpecFields checks the fields that pin OCI spec fields.
func (c *Container) checkSpecFields() error {
	for _, l := range []struct {
		name  string
		paths []string
	}{{"masked_paths", c.MaskedPaths}, {"readonly_paths", c.ReadonlyPaths}} {
		for i, p := range l.paths {
			if !absClean(p) {
				return fmt.Errorf("%s[%d] %q: want a clean absolute path", l.name, i, p)
			}
		}
	}
	if c.Seccomp != "" {
		h, ok := strings.CutPrefix(c.Seccomp, SeccompPrefix)
		if !ok || !hashPattern().MatchString(h) {
			return fmt.Errorf("seccomp %q: want sha256: and 64 lower-case hex digits (confguest policy generate writes it)", c.Seccomp)
		}
	}
	for i, r := range c.Rlimits {
		if !rlimitPattern().MatchString(r.Type) {
			return fmt.Errorf("rlimits[%d].type %q: want a name such as RLIMIT_NOFILE", i, r.Type)
		}
		if r.Soft > r.Hard {
			return fmt.Errorf("rlimits[%d]: soft limit %d above hard limit %d", i, r.Soft, r.Hard)
		}
	}
	if o := c.OOMScoreAdj; o != nil && (*o < -1000 || *o > 1000) {
		return fmt.Errorf("oom_score_adj %d: want -1000 to 1000", *o)
	}
	if u := c.User.Umask; u != nil && *u > 0o777 {
		return fmt.Errorf("user.umask %#o: want at most 0777", *u)
	}
	return checkMappings("", c.UIDMappings, c.GIDMappings)
}

// checkMappings checks a pair of ID mapping lists at field prefix where.
func checkMappings(where string, uid, gid []IDMapping) error {
	if where != "" {
		where += "."
	}
	if (len(uid) == 0) != (len(gid) == 0) {
		return fmt.Errorf("%suid_mappings, %sgid_mappings: give both or neither", where, where)
	}
	for _, l := range []struct {
		name string
		ms   []IDMapping
	}{{"uid_mappings", uid}, {"gid_mappings", gid}} {
		for i, m := range l.ms {
			if m.Size == 0 {
				return fmt.Errorf("%s%s[%d].size: 0 maps nothing", where, l.name, i)
			}
		}
	}
	return nil
}
