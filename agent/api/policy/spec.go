package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
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
