// Package policy enforces the guest's policy in the agent: the Gate installs a policy
// document (checking its SHA-256 against HOST_DATA, or that the policy in force allows
// replacing it) and authorizes every request against it, and the Evaluator decides one
// request against one policy, naming the rule that refuses it. The document format itself
// is agent/api/policy, shared with the host tools; document.go names its types here so the
// evaluator reads as policy.Container. README.md describes the policy and the threat model.
package policy
