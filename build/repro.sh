#!/usr/bin/env bash
# repro.sh: builds the guest image twice, from two clones of HEAD at different paths, with
# different umask, file mtimes, time zone and time of day, and fails if any artifact
# differs, naming the artifact and the first differing byte.
# REPRO_KERNEL=1 also builds the kernel twice, each in a fresh cache of its own (slow);
# otherwise both builds take the kernel from the shared cache.
set -euo pipefail
top=$(git rev-parse --show-toplevel)
cd "$top"
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
	echo "repro: note: uncommitted changes are not part of the clones; this checks HEAD $(git rev-parse --short HEAD)" >&2
fi
work=$(mktemp -d /tmp/confguest-repro.XXXXXX)
trap 'rm -rf "$work"' EXIT

build_one() { # n dir umask tz
	local n=$1 dir=$2 mask=$3 tz=$4
	git clone -q --no-hardlinks "$top" "$dir"
	# Scatter the mtimes of the second clone's files.
	if [ "$n" = 2 ]; then
		find "$dir" -path "$dir/.git" -prune -o -type f -print0 | xargs -0 touch -d "2001-02-03 04:05:06"
	fi
	local kcache=""
	if [ "${REPRO_KERNEL:-0}" = 1 ]; then
		kcache="$work/kcache$n"
	fi
	echo "repro: build $n in $dir (umask $mask, TZ $tz)" >&2
	( umask "$mask"; cd "$dir"; TZ=$tz KCACHE=$kcache make -s image OUT="$dir/out" ) >"$work/build$n.log" 2>&1 || {
		echo "repro: build $n failed; last lines of $work/build$n.log:" >&2
		tail -30 "$work/build$n.log" >&2
		trap - EXIT
		exit 1
	}
}

build_one 1 "$work/a/confguest" 022 UTC
sleep 1
build_one 2 "$work/b/c/confguest-second" 077 Pacific/Auckland

a="$work/a/confguest/out" b="$work/b/c/confguest-second/out"
status=0
while read -r sum name; do
	if [ ! -f "$b/$name" ]; then
		echo "repro: $name: missing from the second build" >&2
		status=1
		continue
	fi
	if ! cmp -s "$a/$name" "$b/$name"; then
		off=$(cmp "$a/$name" "$b/$name" 2>/dev/null | awk '{ gsub(",", "", $5); print $5 - 1; exit }')
		[ -n "$off" ] || off="end of the shorter file ($(stat -c %s "$a/$name") vs $(stat -c %s "$b/$name") bytes)"
		echo "repro: $name differs: first differing byte at offset $off" >&2
		status=1
	fi
done <"$a/SHA256SUMS"
if ! cmp -s "$a/SHA256SUMS" "$b/SHA256SUMS"; then
	echo "repro: SHA256SUMS differ" >&2
	status=1
fi
if [ $status -ne 0 ]; then
	exit 1
fi
echo "repro: both builds identical:"
cat "$a/SHA256SUMS"
