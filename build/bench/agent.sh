#!/usr/bin/env bash
# Agent benchmark: the figures of a lean agent for the image in $CONFGUEST_IMAGE (or out/).
#   1. the size of /sbin/agent as the image ships it (read back from rootfs.img), against
#      the 8 MiB target, and of its libcontainer helper /sbin/libct;
#   2. where its bytes are: the image's agent rebuilt with symbols, broken down by module
#      (build/bench/agentsize; ROWS rows, default 25);
#   3. its memory in the guest: BenchmarkAgentInGuest (./qemu-tests) boots the image, runs
#      CYCLES create/start/wait/delete cycles of `true` (default 1000) and reads the agent's
#      VmRSS from the agent itself at boot, idle (after one warm-up cycle), a tenth of the
#      way (idle again), busy and after the cycles once idle again. Targets: idle <= 10 MiB,
#      after <= idle + 5 %.
# SKIP_GUEST=1 prints 1 and 2 only.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
img=${CONFGUEST_IMAGE:-$root/out}
cycles=${CYCLES:-1000}
rows=${ROWS:-25}
mib=1048576
target=$((8 * mib))

[[ -f $img/rootfs.img ]] || { echo "agent.sh: $img/rootfs.img missing: run make image or set CONFGUEST_IMAGE" >&2; exit 1; }
command -v fsck.erofs >/dev/null || { echo "agent.sh: fsck.erofs not found: install erofs-utils" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fsck.erofs --extract="$tmp/root" "$img/rootfs.img" >/dev/null
size=$(stat -c %s "$tmp/root/sbin/agent")
awk -v s="$size" -v t="$target" -v m="$mib" 'BEGIN {
	printf "agent binary: %d bytes (%.2f MiB), target %d (8 MiB): %s\n", s, s / m, t, (s <= t ? "met" : "over by " s - t " bytes")
}'
helper=$(stat -c %s "$tmp/root/sbin/libct")
awk -v s="$helper" -v m="$mib" 'BEGIN {
	printf "its libcontainer helper, /sbin/libct: %d bytes (%.2f MiB), run once per container operation, not resident\n", s, s / m
}'

echo
echo "where the bytes are (the image's agent rebuilt with symbols; .text, named .rodata, .gopclntab):"
(cd "$root" && go run ./build/bench/agentsize -agent -by module -n "$rows")

[[ ${SKIP_GUEST:-0} == 1 ]] && exit 0

echo
echo "agent memory in the guest over $cycles container cycles (BenchmarkAgentInGuest):"
out="$tmp/bench.txt"
(cd "$root" && CONFGUEST_IMAGE=$img go test -count=1 -timeout 3h -run '^$' -bench '^BenchmarkAgentInGuest$' \
	-benchtime "${cycles}x" ./qemu-tests) >"$out" 2>&1 || { cat "$out" >&2; exit 1; }
# The benchmark line carries the metrics as "value unit" pairs (its log lines are trimmed by
# the testing package, so the figures come from the metrics).
awk '/^BenchmarkAgentInGuest/ {
	for (i = 3; i < NF; i++) m[$(i + 1)] = $i
	split("boot idle busy after", at, " ")
	for (k = 1; k <= 4; k++)
		printf "  %-5s VmRSS %5.2f MiB  RssAnon %5.2f  RssFile %5.2f\n", at[k], m[at[k] "-RSS-MiB"], m[at[k] "-anon-MiB"], m[at[k] "-file-MiB"]
	printf "idle VmRSS %.2f MiB (target 10 MiB: %s); after %s cycles %.2f MiB; growth %.1f %% (target 5 %%: %s)\n",
		m["idle-RSS-MiB"], (m["idle-RSS-MiB"] <= 10 ? "met" : "over"), n, m["after-RSS-MiB"], m["growth-%"],
		(m["growth-%"] <= 5 ? "met" : "over")
	if ("tenth-RSS-MiB" in m)
		printf "  after %d cycles, idle: VmRSS %.2f MiB (RssAnon %.2f); growth from there to the end %.1f %%\n",
			n / 10, m["tenth-RSS-MiB"], m["tenth-anon-MiB"], m["growth-from-tenth-%"]
	printf "growth from boot %.1f %%; create+start+wait through the agent / directly with libcontainer: %s\n",
		m["growth-from-boot-%"], m["agent/direct"]
}' n="$cycles" "$out"
