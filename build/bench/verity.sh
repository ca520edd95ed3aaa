#!/bin/sh
# Times building the dm-verity tree of a 1 GiB file of pseudo-random data:
# ours (mkrootfs -format) against `veritysetup format` on the same file, in
# the same run, alternating, RUNS times each (default 5), after one warm-up
# of each so both read from the page cache. Both use SHA-256, 4096-byte
# blocks, the same salt and UUID, and write the tree after the data in the
# same file; the root hashes must agree. Prints the medians and the ratio
# ours/veritysetup (target: <= 1.0).
set -eu

runs=${RUNS:-5}
size_mib=${SIZE_MIB:-1024}
root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${CONFGUEST_CACHE:-$HOME/.cache/confguest}/bench
data=$cache/verity-${size_mib}m.bin
salt=5a1e5a1e5a1e5a1e5a1e5a1e5a1e5a1e5a1e5a1e5a1e5a1e5a1e5a1e5a1e5a1e
uuid=7e57be4c-0000-8000-8000-000000000001

command -v veritysetup >/dev/null || { echo "verity.sh: veritysetup not found: install the Debian package cryptsetup-bin" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$tmp/mkrootfs" ./rootfs/cmd/mkrootfs)

mkdir -p "$cache"
bytes=$((size_mib * 1024 * 1024))
if [ ! -f "$data" ] || [ "$(stat -c %s "$data")" -lt "$bytes" ]; then
	echo "writing $size_mib MiB of pseudo-random data to $data" >&2
	head -c "$bytes" /dev/urandom >"$data.tmp" && mv "$data.tmp" "$data"
fi
blocks=$((bytes / 4096))

now() { date +%s%N; }

ours() {
	truncate -s "$bytes" "$data"
	t0=$(now)
	"$tmp/mkrootfs" -format -salt "$salt" "$data" >"$tmp/ours.json"
	t1=$(now)
	sed -n 's/.*"root_hash": "\([0-9a-f]*\)".*/\1/p' "$tmp/ours.json" >"$tmp/ours.root"
	echo $((t1 - t0))
}

theirs() {
	truncate -s "$bytes" "$data"
	t0=$(now)
	veritysetup format --hash-offset="$bytes" --data-blocks="$blocks" --salt="$salt" --uuid="$uuid" \
		"$data" "$data" >"$tmp/theirs.out"
	t1=$(now)
	sed -n 's/^Root hash:[[:space:]]*//p' "$tmp/theirs.out" >"$tmp/theirs.root"
	echo $((t1 - t0))
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

ours >/dev/null
theirs >/dev/null
: >"$tmp/ours.ns"
: >"$tmp/theirs.ns"
i=0
while [ $i -lt "$runs" ]; do
	ours >>"$tmp/ours.ns"
	theirs >>"$tmp/theirs.ns"
	if ! cmp -s "$tmp/ours.root" "$tmp/theirs.root"; then
		echo "verity.sh: root hashes differ: ours $(cat "$tmp/ours.root"), veritysetup $(cat "$tmp/theirs.root")" >&2
		exit 1
	fi
	i=$((i + 1))
done
truncate -s "$bytes" "$data"

o=$(median <"$tmp/ours.ns")
v=$(median <"$tmp/theirs.ns")
echo "verity tree of $size_mib MiB, sha256, 4096-byte blocks, $runs runs each, $(nproc) CPUs"
echo "ours (mkrootfs -format):  runs $(awk '{ printf "%.3f ", $1 / 1e9 }' "$tmp/ours.ns")s, median $(awk -v n="$o" 'BEGIN { printf "%.3f", n / 1e9 }') s"
echo "veritysetup format:       runs $(awk '{ printf "%.3f ", $1 / 1e9 }' "$tmp/theirs.ns")s, median $(awk -v n="$v" 'BEGIN { printf "%.3f", n / 1e9 }') s"
echo "root hash (both):         $(cat "$tmp/ours.root")"
awk -v o="$o" -v v="$v" 'BEGIN { printf "ratio ours/veritysetup:   %.2f (target <= 1.0)\n", o / v }'
