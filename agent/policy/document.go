package policy

import doc "confguest/agent/api/policy"

// The policy document format lives in the agent's API
// (confguest/agent/api/policy), shared with the host tools. The evaluator,
// the gate and the agent's server use one package for the policy: these
// names let them read as policy.Container, policy.Parse, ... instead of
// importing a second package named policy under another name.
type (
	Policy       = doc.Policy
	AgentRules   = doc.AgentRules
	Container    = doc.Container
	Rootfs       = doc.Rootfs
	Signed       = doc.Signed
	User         = doc.User
	Mount        = doc.Mount
	Exec         = doc.Exec
	Match        = doc.Match
	Capabilities = doc.Capabilities
)

// Version is the only policy format version this agent reads.
const Version = doc.Version

// MaxSize bounds a policy document in bytes.
const MaxSize = doc.MaxSize

// Parse reads and checks a policy document (see doc.Parse).
func Parse(b []byte) (*Policy, error) { return doc.Parse(b) }

// Exactly returns matchers for exactly these strings.
func Exactly(ss ...string) []Match { return doc.Exactly(ss...) }

// Hash returns the SHA-256 of a policy document's exact bytes: HOST_DATA.
func Hash(b []byte) [32]byte { return doc.Hash(b) }

// HashHex is Hash in lower-case hex.
func HashHex(b []byte) string { return doc.HashHex(b) }
