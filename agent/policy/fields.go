package policy

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
)

// class says how the agent treats one field of the OCI runtime spec. The
// agent hands libcontainer only fields it has classified: every field of
// specs.Spec (by JSON path) has a row in specFields, TestSpecFieldsClassified
// walks the type to keep it so, and a field without a row is refused at
// run time when a request sets it (a runtime-spec upgrade cannot slip a
// new field through).
type class int

const (
	// pinned: matched against the policy entry (README: container entries).
	pinned class = iota + 1
	// fixed: checked against a rule the agent applies to every entry.
	fixed
	// agentSet: overwritten by the agent before libcontainer reads it.
	agentSet
	// limit: a resource limit the host chooses. It takes resources from
	// this container only; the host controls the VM's resources anyway.
	limit
	// refused: a request that sets it (non-zero) is refused.
	refused
	// unused: libcontainer (the version in go.mod) never reads it.
	unused
	// object: a struct whose fields have rows of their own.
	object
)

func (c class) String() string {
	return [...]string{"unclassified", "pinned", "fixed", "agent-set", "limit", "refused", "unused", "object"}[c]
}

// fieldRule is one row: the class and, for refused fields, why.
type fieldRule struct {
	class class
	why   string
}

// Why refused fields are refused; the denial says it.
const (
	whyGuestOnly   = "acts on the guest outside the container"
	whyNoLSM       = "the guest kernel has no LSM: a label would be ignored or fail"
	whyHostChosen  = "a host-chosen value no policy field pins"
	whyOtherOS     = "not a Linux field"
	whyHooks       = "OCI hooks run in the guest, outside the container: no policy allows them"
	whyCgroupFiles = "writes cgroup files by name (cgroup.procs pulls other processes in)"
)

// specFields classifies every field of specs.Spec by JSON path: "a.b" is
// field b of a, "a[].b" field b of each element of list a, "a{}" each value
// of map a. Paths under a row whose class is not object need no rows: the
// check covers the value as a whole (refused: any non-zero value; pinned
// whole: compared with == or by the hash of its canonical JSON). It is built on first
// use: the agent's start does not need it.
var specFields = sync.OnceValue(func() map[string]fieldRule {
	return map[string]fieldRule{
		"ociVersion": {unused, ""},
		"process":    {object, ""},
		// process.*: also the exec'd process of ExecProcess.
		"process.terminal":                 {pinned, "tty"},
		"process.consoleSize":              {fixed, "only with process.terminal"},
		"process.user":                     {object, ""},
		"process.user.uid":                 {pinned, "user"},
		"process.user.gid":                 {pinned, "user"},
		"process.user.umask":               {pinned, "user.umask"},
		"process.user.additionalGids":      {pinned, "user"},
		"process.user.username":            {refused, whyOtherOS},
		"process.args":                     {pinned, "args"},
		"process.commandLine":              {refused, whyOtherOS},
		"process.env":                      {pinned, "env"},
		"process.cwd":                      {pinned, "cwd"},
		"process.capabilities":             {object, ""},
		"process.capabilities.bounding":    {pinned, "capabilities"},
		"process.capabilities.effective":   {pinned, "capabilities"},
		"process.capabilities.inheritable": {pinned, "capabilities"},
		"process.capabilities.permitted":   {pinned, "capabilities"},
		"process.capabilities.ambient":     {pinned, "capabilities"},
		"process.rlimits":                  {pinned, "rlimits"},
		"process.noNewPrivileges":          {pinned, "no_new_privileges"},
		"process.apparmorProfile":          {refused, whyNoLSM},
		"process.oomScoreAdj":              {pinned, "oom_score_adj"},
		"process.scheduler":                {refused, whyHostChosen},
		"process.selinuxLabel":             {refused, whyNoLSM},
		"process.ioPriority":               {refused, whyHostChosen},
		"process.execCPUAffinity":          {refused, whyHostChosen},

		"root":          {object, ""},
		"root.path":     {agentSet, "the container's overlay"},
		"root.readonly": {pinned, "readonly_rootfs"},
		"hostname":      {pinned, "hostname"},
		"domainname":    {refused, whyHostChosen},

		"mounts":               {object, ""},
		"mounts[].destination": {pinned, "mounts"},
		"mounts[].type":        {pinned, "mounts"},
		"mounts[].source":      {pinned, "mounts"},
		"mounts[].options":     {pinned, "mounts"},
		"mounts[].uidMappings": {pinned, "mounts"},
		"mounts[].gidMappings": {pinned, "mounts"},

		"hooks":       {refused, whyHooks},
		"annotations": {refused, "libcontainer reads some annotations as settings"},

		"linux":             {object, ""},
		"linux.uidMappings": {pinned, "uid_mappings"},
		"linux.gidMappings": {pinned, "gid_mappings"},
		"linux.sysctl":      {pinned, "sysctls"},
		"linux.resources":   {object, ""},

		"linux.resources.devices":          {object, ""},
		"linux.resources.devices[].allow":  {fixed, "deny rules only"},
		"linux.resources.devices[].type":   {fixed, "deny rules only"},
		"linux.resources.devices[].major":  {fixed, "deny rules only"},
		"linux.resources.devices[].minor":  {fixed, "deny rules only"},
		"linux.resources.devices[].access": {fixed, "deny rules only"},

		"linux.resources.memory":                   {object, ""},
		"linux.resources.memory.limit":             {limit, ""},
		"linux.resources.memory.reservation":       {limit, ""},
		"linux.resources.memory.swap":              {limit, ""},
		"linux.resources.memory.kernel":            {limit, ""},
		"linux.resources.memory.kernelTCP":         {limit, ""},
		"linux.resources.memory.swappiness":        {limit, ""},
		"linux.resources.memory.disableOOMKiller":  {limit, ""},
		"linux.resources.memory.useHierarchy":      {limit, ""},
		"linux.resources.memory.checkBeforeUpdate": {limit, ""},

		"linux.resources.cpu":                 {object, ""},
		"linux.resources.cpu.shares":          {limit, ""},
		"linux.resources.cpu.quota":           {limit, ""},
		"linux.resources.cpu.burst":           {limit, ""},
		"linux.resources.cpu.period":          {limit, ""},
		"linux.resources.cpu.realtimeRuntime": {limit, ""},
		"linux.resources.cpu.realtimePeriod":  {limit, ""},
		"linux.resources.cpu.cpus":            {limit, ""},
		"linux.resources.cpu.mems":            {limit, ""},
		"linux.resources.cpu.idle":            {limit, ""},

		"linux.resources.pids":       {object, ""},
		"linux.resources.pids.limit": {limit, ""},

		"linux.resources.blockIO":        {refused, "names host block devices by number"},
		"linux.resources.hugepageLimits": {refused, whyHostChosen},
		"linux.resources.network":        {refused, "cgroup v1 only"},
		"linux.resources.rdma":           {refused, "the guest has no RDMA devices"},
		"linux.resources.unified":        {refused, whyCgroupFiles},

		"linux.cgroupsPath":       {agentSet, "/confguest/<container id>"},
		"linux.namespaces":        {object, ""},
		"linux.namespaces[].type": {fixed, "own pid, mount, ipc, uts, cgroup, network (unless guest_network), user (with uid_mappings)"},
		"linux.namespaces[].path": {refused, "joining an existing namespace shares it with the guest (the agent sets the paths of the pod namespaces a request's pod_namespaces joins)"},
		"linux.devices":           {refused, "no policy allows device nodes"},
		"linux.netDevices":        {refused, "moves a guest network device into the container"},
		"linux.seccomp":           {pinned, "seccomp"},
		"linux.rootfsPropagation": {fixed, "private or slave"},
		"linux.maskedPaths":       {pinned, "masked_paths"},
		"linux.readonlyPaths":     {pinned, "readonly_paths"},
		"linux.mountLabel":        {refused, whyNoLSM},
		"linux.intelRdt":          {refused, whyGuestOnly},
		"linux.memoryPolicy":      {refused, whyHostChosen},
		"linux.personality":       {refused, whyHostChosen},
		"linux.timeOffsets":       {refused, whyHostChosen},

		"solaris": {refused, whyOtherOS},
		"windows": {refused, whyOtherOS},
		"vm":      {refused, whyOtherOS},
		"zos":     {refused, whyOtherOS},
		"freebsd": {refused, whyOtherOS},
	}
})

// createFields classifies every field of the CreateContainerRequest
// message beside its spec, by proto name ("a.b": field b of message a), as
// specFields does for the spec: TestRequestFieldsClassified walks the
// message, so a new request field is decided on before any request can
// carry it.
var createFields = map[string]fieldRule{
	"container_id":               {fixed, "a valid ID; the admission is bound to it"},
	"spec_json":                  {object, "every field in specFields"},
	"rootfs":                     {pinned, "rootfs (layers by verity root hash; the format is fixed)"},
	"stdio":                      {object, ""},
	"stdio.stdin":                {pinned, "stdin"},
	"stdio.tty_width":            {fixed, "only with process.terminal"},
	"stdio.tty_height":           {fixed, "only with process.terminal"},
	"pod_namespaces":             {pinned, "pod_namespaces (the agent sets the namespace paths)"},
	"volumes":                    {object, ""},
	"volumes.destination":        {pinned, "volumes (destination and kind; the agent chooses the guest path)"},
	"volumes.read_only":          {fixed, "only makes the mount read-only"},
	"volumes.files":              {object, ""},
	"volumes.files.entries":      {object, ""},
	"volumes.files.entries.path": {fixed, "clean, relative, below the destination (agent/container volume checks)"},
	"volumes.files.entries.mode": {fixed, "permission bits only"},
	"volumes.files.entries.dir":  {fixed, "a directory, no data"},
	"volumes.files.entries.data": {limit, "1 MiB a file, 2 MiB a container"},
	"volumes.empty_dir":          {object, "its presence is the kind the policy pins (volumes)"},
	"volumes.empty_dir.name":     {fixed, "names the pod's emptyDir; bounded, any text"},
	"volumes.empty_dir.memory":   {fixed, "tmpfs instead of the guest's scratch"},
	"rootfs_attestation":         {pinned, "rootfs.signed (verified against the entry's keys, then it must sign exactly rootfs.block; unread by other entries)"},
}

// updateFields classifies every field of the UpdateContainerRequest
// message, as createFields does for CreateContainerRequest
// (TestRequestFieldsClassified walks both). Each limit is allowed by its
// group in the entry's update_resources and bounded by a fixed range
// (container.CheckUpdate); a field this agent does not know is refused
// when the request is decoded (request.Decode).
var updateFields = map[string]fieldRule{
	"container_id":       {fixed, "an admitted container"},
	"memory":             {object, "its presence needs update_resources memory"},
	"memory.limit":       {limit, "-1 or 1 MiB to 1 PiB"},
	"memory.reservation": {limit, "-1 or 1 MiB to 1 PiB"},
	"memory.swap":        {limit, "-1 or 1 MiB to 1 PiB"},
	"cpu":                {object, "its presence needs update_resources cpu"},
	"cpu.shares":         {limit, "2 to 262144"},
	"cpu.quota":          {limit, "-1 or 1000 µs to 2^40 µs"},
	"cpu.period":         {limit, "1000 µs to 1 s"},
	"cpu.cpus":           {limit, "a cpuset list; the guest's kernel refuses CPUs it does not have"},
	"cpu.mems":           {limit, "a cpuset list; the guest's kernel refuses nodes it does not have"},
	"pids":               {object, "its presence needs update_resources pids"},
	"pids.limit":         {limit, "-1 or 1 to 2^22"},
}

// networkFields classifies every field of the ConfigureNetworkRequest
// message, as createFields does for CreateContainerRequest. The call as a
// whole is allowed by agent.pod_network; each field is then checked by a
// fixed rule or bounded (agent/podnet.Parse) before anything is touched.
var networkFields = map[string]fieldRule{
	"interface":           {object, ""},
	"interface.mac":       {fixed, "unicast; must name a virtio-net device of the guest, which moves into the pod's network namespace, never the agent's"},
	"interface.name":      {fixed, "[A-Za-z0-9_.-]{1,15}, not lo"},
	"interface.mtu":       {fixed, "68 to 65535"},
	"interface.addresses": {limit, "at most 16, CIDR, unicast, not loopback, link-local or multicast"},
	"routes":              {object, "at most 64 (agent/podnet)"},
	"routes.destination":  {fixed, "canonical CIDR, none covering loopback or multicast"},
	"routes.gateway":      {fixed, "an address of the destination's family, not loopback or multicast"},
}

// jsonName is the JSON name of a struct field ("" for an embedded struct
// whose fields are inlined, "-" for a field encoding/json skips).
func jsonName(f reflect.StructField) string {
	tag := f.Tag.Get("json")
	name, _, _ := strings.Cut(tag, ",")
	if name == "" {
		if f.Anonymous {
			return ""
		}
		return f.Name
	}
	return name
}

// refusedField finds the first field of v (a spec or process) that is
// refused or has no row, and is set. key is v's path as specFields spells
// it ("mounts[]"), shown the same with indexes and map keys ("mounts[2]").
// It returns the shown path and the rule, or "" when there is none.
func refusedField(v reflect.Value, key, shown string) (string, fieldRule) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			return refusedField(v.Elem(), key, shown)
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			if p, r := refusedField(v.Index(i), key+"[]", shown+"["+strconv.Itoa(i)+"]"); p != "" {
				return p, r
			}
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			if p, r := refusedField(it.Value(), key+"{}", fmt.Sprintf("%s[%q]", shown, it.Key())); p != "" {
				return p, r
			}
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := jsonName(f)
			if name == "-" || !f.IsExported() {
				continue
			}
			fv := v.Field(i)
			if name == "" { // an embedded struct, inlined
				if p, r := refusedField(fv, key, shown); p != "" {
					return p, r
				}
				continue
			}
			fkey, fshown := join(key, name), join(shown, name)
			r, ok := specFields()[fkey]
			switch {
			case !ok && !fv.IsZero():
				return fshown, fieldRule{refused, "this agent does not know the field: no policy can allow it"}
			case ok && r.class == refused && !fv.IsZero():
				return fshown, r
			case ok && r.class == object:
				if p, r := refusedField(fv, fkey, fshown); p != "" {
					return p, r
				}
			}
		}
	}
	return "", fieldRule{}
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}
