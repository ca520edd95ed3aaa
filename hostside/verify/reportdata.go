package verify

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"confguest/agent/api/evidence"
	"confguest/agent/api/policy"
)

// FieldPolicyInForce names violations about which policy the guest runs
// under: a policy that lets the host replace it.
const FieldPolicyInForce = "POLICY_IN_FORCE"

// inForce is a policy a report may name as in force.
type inForce struct {
	hash   [32]byte
	source string // what the verifier was told, for messages
}

func (p inForce) String() string {
	if p.hash == evidence.NoPolicy {
		return p.source
	}
	return fmt.Sprintf("%s %s", p.source, hex.EncodeToString(p.hash[:]))
}

// policyCheck reads the launch policy and the policy in force of exp,
// returns the policies a report may name as in force, and the violation
// a replaceable policy in force is (nil when there is none).
func policyCheck(exp Expected) ([]inForce, *Violation, error) {
	launch, err := policy.Parse(exp.Policy)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: launch policy: %w: give the policy file the guest was launched with", ErrInput, err)
	}
	cur, rules := inForce{sha256.Sum256(exp.Policy), "the launch policy"}, launch.Agent
	if exp.PolicyInForce != nil {
		if !launch.Agent.ReplacePolicy {
			return nil, nil, fmt.Errorf("%w: policy in force: the launch policy does not allow replacing it (agent.replace_policy is off), so it is the policy in force: drop --policy-in-force", ErrInput)
		}
		p, err := policy.Parse(exp.PolicyInForce)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: policy in force: %w", ErrInput, err)
		}
		cur, rules = inForce{sha256.Sum256(exp.PolicyInForce), "the policy in force given"}, p.Agent
	}
	var v *Violation
	switch {
	case !rules.ReplacePolicy || exp.AllowPolicyReplacement:
	case exp.PolicyInForce == nil:
		v = &Violation{FieldPolicyInForce, "the launch policy allows replacing it (agent.replace_policy): the host may install any policy, " +
			"and HOST_DATA still names the launch policy: give the replacement you accept with --policy-in-force FILE " +
			"(REPORT_DATA must then name it), or accept any with --allow-policy-replacement"}
	default:
		v = &Violation{FieldPolicyInForce, "the policy in force given allows replacing it too (agent.replace_policy): " +
			"the host may replace it after this report: accept that with --allow-policy-replacement"}
	}
	out := []inForce{cur}
	if exp.Purpose == evidence.HostReport {
		// A fresh guest: nothing installed, the agent answers nothing but
		// Version, GetReport and the SetPolicy that HOST_DATA binds.
		out = append(out, inForce{evidence.NoPolicy, "no policy installed yet"})
	}
	return out, v, nil
}

// checkReportData compares REPORT_DATA with evidence.ReportData of the
// expected purpose, each acceptable policy in force and the caller data.
// It returns the policy the report names, or a violation that says what
// the report is instead, when the verifier can tell.
func checkReportData(got []byte, exp Expected, policies []inForce, launchPolicy []byte) (*inForce, *Violation) {
	for i, p := range policies {
		if rd := evidence.ReportData(exp.Purpose, p.hash, exp.Data); bytes.Equal(got, rd[:]) {
			return &policies[i], nil
		}
	}
	want := evidence.ReportData(exp.Purpose, policies[0].hash, exp.Data)
	msg := fmt.Sprintf("report field REPORT_DATA is %x, want %x (%s over the given data under %s)", got, want, exp.Purpose.Name(), policies[0])
	known := append([]inForce{{sha256.Sum256(launchPolicy), "the launch policy"}, {evidence.NoPolicy, "no policy"}}, policies...)
	for _, purpose := range []evidence.Purpose{evidence.HostReport, evidence.WorkloadEvidence, evidence.HostDataRead} {
		for _, p := range known {
			if rd := evidence.ReportData(purpose, p.hash, exp.Data); bytes.Equal(got, rd[:]) {
				if purpose == exp.Purpose {
					return nil, &Violation{FieldReportData, fmt.Sprintf("%s: the report names %s as in force, which this check does not accept", msg, p)}
				}
				return nil, &Violation{FieldReportData, fmt.Sprintf("%s: the report is a %s, refused as %s", msg, purpose.Name(), exp.Purpose.Name())}
			}
		}
	}
	var raw [64]byte
	if copy(raw[:], exp.Data) == len(exp.Data) && bytes.Equal(got, raw[:]) {
		return nil, &Violation{FieldReportData, msg + ": REPORT_DATA is the caller data itself: the agent signed it without a purpose, so anyone who could call it may have chosen it"}
	}
	return nil, &Violation{FieldReportData, msg + ": another purpose, policy in force or data"}
}
