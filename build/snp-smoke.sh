#!/usr/bin/env bash
# snp-smoke.sh [IMAGE_DIR]: the SEV-SNP smoke test, for hosts with AMD SEV-SNP.
#
# For each launch mode (QEMU + OVMF with kernel hashes, Cloud Hypervisor + guest.igvm) it
# boots the guest image as an SNP guest with a container (confguest start --snp), fetches a
# fresh attestation report through the agent (confguest verify --guest: GetReport with a
# random nonce, AMD signature chain, REPORT_DATA) and compares the report's MEASUREMENT with
# the launch measurement the launcher computed and measurement.json publishes, and its
# HOST_DATA with the SHA-256 of the policy. It exits 0 only if every mode passes.
#
# On a host without SEV-SNP it stops before starting anything, with exit status 2.
#
# Environment:
#   CONFGUEST  the confguest binary (default: bin/confguest of this tree; make build)
#   ROOTFS     the container rootfs directory (default: IMAGE_DIR/build/busybox-root)
#   VMMS       the modes to run (default: "qemu cloud-hypervisor")
#   POLICY     an agent policy file; HOST_DATA is its SHA-256 (default: the policy
#              confguest policy generate writes for ROOTFS and `sleep 3600`). It must
#              allow GetReport ("agent": {"get_report": true}, as generated policies do)
#              and, if it allows replace_policy, verify refuses it (see README).
#   VCEK       the VCEK certificate, when the host's reports carry no certificates
#   OVMF       firmware for the QEMU mode (default: the pinned ovmf-amdsev, build/debpin.sh)
set -euo pipefail

here=$(dirname "$(readlink -f "$0")")
root=$(dirname "$here")
img=$(readlink -f "${1:-$root/out}")
cg=${CONFGUEST:-$root/bin/confguest}
rootfs=${ROOTFS:-$img/build/busybox-root}
vmms=${VMMS:-qemu cloud-hypervisor}
param=${SNP_PARAM:-/sys/module/kvm_amd/parameters/sev_snp} # SNP_PARAM: for testing this script

say() { echo "snp-smoke: $*" >&2; }

# 1. The host must run SEV-SNP guests; nothing is built or started otherwise.
snp=$(cat "$param" 2>/dev/null || true)
case "$snp" in
Y | y | 1) ;;
*)
	say "no SEV-SNP on this host ($param: ${snp:-not present})."
	say "This test needs an AMD EPYC host (Milan or later) with SEV-SNP enabled in its firmware,"
	say "a host kernel with SNP support and kvm_amd loaded with sev_snp=1. Nothing was started."
	exit 2
	;;
esac
for f in "$cg" "$img/measurement.json" "$img/guest.igvm"; do
	[ -e "$f" ] || { say "$f is missing: run make image build"; exit 1; }
done
[ -d "$rootfs" ] || { say "container rootfs $rootfs is missing: set ROOTFS or run make image"; exit 1; }

work=$(mktemp -d)
guests=()
cleanup() {
	for g in "${guests[@]}"; do "$cg" stop "$g" >/dev/null 2>&1 || true; done
	rm -rf "$work"
}
trap cleanup EXIT

# HOST_DATA is the SHA-256 of the policy the launcher sends. Without POLICY, write the one
# `confguest start` generates for this rootfs and command, and send exactly those bytes.
if [ -n "${POLICY:-}" ]; then
	policy=$(readlink -f "$POLICY")
else
	policy=$work/policy.json
	"$cg" policy generate --rootfs "$rootfs" -o "$policy" -- sleep 3600
fi
policy_args=(--policy "$policy")
want_host_data=$(sha256sum "$policy" | cut -d' ' -f1)
verify_args=()
[ -n "${VCEK:-}" ] && verify_args+=(--vcek "$VCEK")
start_args=()
[ -n "${OVMF:-}" ] && start_args+=(--ovmf "$OVMF")

# json_field FILE KEY: the first string value of "KEY" in a JSON file.
json_field() { grep -o "\"$2\": *\"[^\"]*\"" "$1" | head -1 | sed 's/.*: *"\(.*\)"/\1/'; }

failed=0
for vmm in $vmms; do
	name=snp-smoke-$vmm-$$
	say "== $vmm: confguest start --snp"
	mode_args=("${start_args[@]}")
	[ "$vmm" = qemu ] || mode_args=()
	if ! "$cg" start --name "$name" --snp --vmm "$vmm" --image "$img" --rootfs "$rootfs" \
		"${policy_args[@]}" "${mode_args[@]}" -- sleep 3600 >/dev/null 2>"$work/$vmm.start"; then
		cat "$work/$vmm.start" >&2
		say "$vmm: FAIL: the SEV-SNP guest did not start"
		failed=1
		continue
	fi
	guests+=("$name")
	cat "$work/$vmm.start" >&2
	expected=$(sed -n 's/.*expected MEASUREMENT \([0-9a-f]\{96\}\).*/\1/p' "$work/$vmm.start" | head -1)
	if [ -z "$expected" ]; then
		say "$vmm: FAIL: the launcher printed no expected measurement"
		failed=1
		continue
	fi

	say "== $vmm: fetching a report through the agent (confguest verify --guest)"
	verdict=0
	"$cg" verify --guest "$name" --measurement "$img/measurement.json" --policy "$policy" \
		"${verify_args[@]}" --json >"$work/$vmm.json" 2>"$work/$vmm.verify" || verdict=$?
	got_m=$(json_field "$work/$vmm.json" measurement)
	got_hd=$(json_field "$work/$vmm.json" host_data)
	if [ -z "$got_m" ]; then
		cat "$work/$vmm.verify" >&2
		say "$vmm: FAIL: no report from the guest"
		failed=1
		continue
	fi
	ok=1
	if [ "$got_m" = "$expected" ]; then
		say "$vmm: MEASUREMENT $got_m = expected"
	else
		say "$vmm: MEASUREMENT $got_m, expected $expected: MISMATCH"
		ok=0
	fi
	if [ "$got_hd" = "$want_host_data" ]; then
		say "$vmm: HOST_DATA $got_hd = SHA-256 of the policy"
	else
		say "$vmm: HOST_DATA $got_hd, expected $want_host_data: MISMATCH"
		ok=0
	fi
	if [ "$verdict" -ne 0 ]; then
		# Signature chain, REPORT_DATA, debug policy, TCB: every violation verify found.
		cat "$work/$vmm.json" "$work/$vmm.verify" >&2
		say "$vmm: confguest verify refused the report (exit $verdict; see its violations above)"
		ok=0
	fi
	if [ "$ok" = 1 ]; then say "$vmm: PASS"; else say "$vmm: FAIL"; failed=1; fi
	"$cg" stop "$name" >/dev/null 2>&1 || true
done
exit "$failed"
