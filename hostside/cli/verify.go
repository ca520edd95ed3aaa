package cli

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"confguest/agent/api/evidence"
	"confguest/hostside/launcher"
	"confguest/hostside/verify"
)

func init() {
	register(command{
		name:    "verify",
		summary: "check an SEV-SNP attestation report against a measurement and a policy",
		run:     runVerify,
	})
}

type verifyFlags struct {
	report, measurement, policy, minTCB, vcek, roots string
	purpose, data, dataFile, policyInForce           string
	guest, runDir                                    string
	allowDebug, allowReplacement, json               bool
}

func runVerify(ctx context.Context, args []string, stdio Stdio) error {
	fs := newFlags("verify", stdio)
	var f verifyFlags
	fs.StringVar(&f.report, "report", "", "the extended report (GetReport output: report + certificate table, or the evidence endpoint's JSON answer), - for standard input")
	fs.StringVar(&f.guest, "guest", "", "fetch a fresh report from this running guest (confguest start --name), bound to a random nonce")
	fs.StringVar(&f.runDir, "run-dir", launcher.DefaultRunBase(), "state directory of running guests (with --guest)")
	fs.StringVar(&f.measurement, "measurement", "", "expected launch measurement: 96 hex digits, or a build's measurement.json (required)")
	fs.StringVar(&f.policy, "policy", "", "the policy file the guest was launched with; HOST_DATA must be its SHA-256 (required)")
	fs.StringVar(&f.purpose, "purpose", "host-report", "what the report must be for: host-report (GetReport) or workload-evidence (GET /v1/evidence); a report for the other is refused")
	fs.StringVar(&f.data, "data", "", "the caller data in hex: the nonce given to GetReport, or the runtime_data given to the evidence endpoint (decoded)")
	fs.StringVar(&f.dataFile, "data-file", "", "the caller data as a file of raw bytes (instead of --data)")
	fs.StringVar(&f.policyInForce, "policy-in-force", "", "the replacement policy you accept as in force when the launch policy allows replacement: REPORT_DATA must name it")
	fs.BoolVar(&f.allowReplacement, "allow-policy-replacement", false, "accept a policy in force that lets the host replace it (the host may then install any policy after this report)")
	fs.StringVar(&f.minTCB, "min-tcb", "", "minimum reported TCB: bl=N,tee=N,snp=N,ucode=N or 0x<TCB_VERSION>")
	fs.StringVar(&f.vcek, "vcek", "", "VCEK certificate (PEM or DER) when the report carries no certificates")
	fs.StringVar(&f.roots, "trusted-roots", "", "ASK+ARK PEM bundle to trust instead of the AMD roots built in (tests, pinning)")
	fs.BoolVar(&f.allowDebug, "allow-debug", false, "accept a guest the host may debug (never for production)")
	fs.BoolVar(&f.json, "json", false, "print the result as JSON")
	fs.Usage = func() {
		fmt.Fprintln(stdio.Err, "usage: confguest verify (--report FILE | --guest NAME) --measurement HEX|measurement.json --policy FILE\n"+
			"         [--purpose host-report|workload-evidence] [--data HEX | --data-file FILE]\n"+
			"         [--policy-in-force FILE | --allow-policy-replacement] [flags]")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	if (f.report == "") == (f.guest == "") {
		return usagef("give one of --report and --guest")
	}
	if f.guest != "" && (f.data != "" || f.dataFile != "" || f.purpose != "host-report") {
		return usagef("--guest fetches a host report over a fresh random nonce: drop --data, --data-file and --purpose")
	}
	if f.data != "" && f.dataFile != "" {
		return usagef("give one of --data and --data-file")
	}
	for _, req := range []struct{ name, val string }{{"measurement", f.measurement}, {"policy", f.policy}} {
		if req.val == "" {
			return usagef("--%s is required", req.name)
		}
	}
	exp, opts, err := f.expectations()
	if err != nil {
		return err
	}
	var ext []byte
	switch {
	case f.guest != "":
		var nonce []byte
		if ext, nonce, err = fetchGuestReport(ctx, f.runDir, f.guest); err != nil {
			return err
		}
		exp.Data = nonce
		f.report = "guest " + f.guest
	case f.report == "-":
		ext, err = io.ReadAll(stdio.In)
	default:
		ext, err = os.ReadFile(f.report)
	}
	if err != nil {
		return fmt.Errorf("read report: %w", err)
	}
	res, err := verify.Report(ctx, endpointAnswer(ext), exp, opts...)
	if err != nil {
		return fmt.Errorf("%s: %w", f.report, err)
	}
	if f.json {
		if res.Violations == nil {
			res.Violations = []verify.Violation{}
		}
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return fmt.Errorf("encode result: %w", err)
		}
		fmt.Fprintf(stdio.Out, "%s\n", b)
	} else {
		printVerdict(stdio.Out, f, res)
	}
	if !res.OK {
		return ExitError{Code: 1}
	}
	return nil
}

func (f verifyFlags) expectations() (verify.Expected, []verify.Option, error) {
	var exp verify.Expected
	var opts []verify.Option
	ms, err := verify.Measurements(f.measurement)
	if err != nil {
		return exp, nil, usagef("--measurement: %v", err)
	}
	exp.Measurements = ms
	if exp.Policy, err = os.ReadFile(f.policy); err != nil {
		return exp, nil, fmt.Errorf("read policy: %w", err)
	}
	if exp.Purpose, err = evidence.ParsePurpose(f.purpose); err != nil {
		return exp, nil, usagef("--purpose: %v", err)
	}
	switch {
	case f.data != "":
		if exp.Data, err = hex.DecodeString(f.data); err != nil {
			return exp, nil, usagef("--data %.40q: want hex digits (raw bytes: --data-file)", f.data)
		}
	case f.dataFile != "":
		if exp.Data, err = os.ReadFile(f.dataFile); err != nil {
			return exp, nil, fmt.Errorf("read caller data: %w", err)
		}
	}
	if f.policyInForce != "" {
		if exp.PolicyInForce, err = os.ReadFile(f.policyInForce); err != nil {
			return exp, nil, fmt.Errorf("read policy in force: %w", err)
		}
	}
	exp.AllowPolicyReplacement = f.allowReplacement
	if f.minTCB != "" {
		t, err := verify.ParseTCB(f.minTCB)
		if err != nil {
			return exp, nil, usagef("--min-tcb: %v", err)
		}
		exp.MinimumTCB = &t
	}
	exp.AllowDebug = f.allowDebug
	if f.vcek != "" {
		b, err := os.ReadFile(f.vcek)
		if err != nil {
			return exp, nil, fmt.Errorf("read VCEK: %w", err)
		}
		opts = append(opts, verify.WithVCEK(b))
	}
	if f.roots != "" {
		b, err := os.ReadFile(f.roots)
		if err != nil {
			return exp, nil, fmt.Errorf("read trusted roots: %w", err)
		}
		roots, err := verify.RootsFromPEM(b)
		if err != nil {
			return exp, nil, err
		}
		opts = append(opts, verify.WithTrustedRoots(roots))
	}
	return exp, opts, nil
}

func printVerdict(w io.Writer, f verifyFlags, res *verify.Result) {
	var b strings.Builder
	if res.OK {
		b.WriteString("OK: the report is genuine and matches the expected guest\n")
	} else {
		n := len(res.Violations)
		fmt.Fprintf(&b, "REJECTED: %d violation%s\n", n, map[bool]string{true: "", false: "s"}[n == 1])
		for _, v := range res.Violations {
			fmt.Fprintf(&b, "  %-12s %s\n", v.Field, v.Message)
		}
	}
	r := res.Report
	match := "matches none expected"
	if res.MatchedMeasurement != "" {
		match = "matches " + res.MatchedMeasurement
	}
	rd := "not checked: give the caller data with --data or --data-file"
	switch {
	case res.PolicyInForce != "":
		rd = fmt.Sprintf("%s over the given data; policy in force: %s", res.Purpose, res.PolicyInForce)
	case f.data != "" || f.dataFile != "" || f.guest != "":
		rd = "does not match, see above"
	}
	fmt.Fprintf(&b, "report:\n")
	fmt.Fprintf(&b, "  measurement  %s (%s)\n", r.Measurement, match)
	fmt.Fprintf(&b, "  host_data    %s (SHA-256 of %s: %s)\n", r.HostData, f.policy, res.PolicySHA256)
	fmt.Fprintf(&b, "  report_data  %s (%s)\n", r.ReportData, rd)
	fmt.Fprintf(&b, "  debug        %v\n", r.Debug)
	fmt.Fprintf(&b, "  reported TCB %s\n", r.ReportedTCB)
	fmt.Fprintf(&b, "  signed by    %s, VMPL %d, report version %d\n", r.Signer, r.VMPL, r.Version)
	io.WriteString(w, b.String()) //nolint:errcheck // nothing to do about a closed stdout
}

// endpointAnswer returns the extended report of b: for the evidence
// endpoint's JSON answer ({"report": base64, "certificates": base64, ...})
// the report followed by the certificate table, else b itself.
func endpointAnswer(b []byte) []byte {
	var a struct {
		Report       []byte `json:"report"`
		Certificates []byte `json:"certificates"`
	}
	if len(b) == 0 || b[0] != '{' || json.Unmarshal(b, &a) != nil || len(a.Report) == 0 {
		return b
	}
	return append(a.Report, a.Certificates...)
}
