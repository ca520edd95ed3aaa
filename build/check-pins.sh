#!/usr/bin/env bash
# check-pins.sh: the builders must refuse a machine whose tools differ from the pins. It
# copies build/toolchain.lock with one pinned version changed (xz-utils for the kernel,
# erofs-utils for the image) and checks that buildkernel and mkimage each stop before
# building, naming the tool, the version installed and the pin.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
work=$(mktemp -d /tmp/confguest-pins.XXXXXX)
trap 'rm -rf "$work"' EXIT

expect_refusal() { # name lock package log command...
	local name=$1 lock=$2 pkg=$3 log=$4
	shift 4
	local installed pinned
	installed=$(dpkg-query -W -f='${Version}' "$pkg")
	pinned=$(awk -v p="$pkg" '$1 == p { print $2 }' "$lock")
	if "$@" >"$log" 2>&1; then
		echo "check-pins: $name ran with $pkg pinned to $pinned (installed $installed); it must refuse" >&2
		exit 1
	fi
	local want="$pkg: version $installed installed, pinned $pinned"
	if ! grep -qF "$want" "$log"; then
		echo "check-pins: $name failed without saying \"$want\":" >&2
		tail -20 "$log" >&2
		exit 1
	fi
	echo "check-pins: $name refused: $(grep -F "$want" "$log" | sed 's/^ *//')"
}

sed 's/^\(xz-utils[[:space:]]\+\)[^[:space:]]\+/\19.9.9-not-installed/' build/toolchain.lock >"$work/kernel.lock"
expect_refusal buildkernel "$work/kernel.lock" xz-utils "$work/buildkernel.log" \
	go run ./kernelcfg/cmd/buildkernel -cache "$work/kcache" -o "$work/bzImage" -toolchain "$work/kernel.lock"
[ ! -e "$work/kcache" ] || { echo "check-pins: buildkernel created $work/kcache before refusing" >&2; exit 1; }

sed 's/^\(erofs-utils[[:space:]]\+\)[^[:space:]]\+/\19.9.9-not-installed/' build/toolchain.lock >"$work/image.lock"
touch "$work/bzImage" "$work/kernel.json"
expect_refusal mkimage "$work/image.lock" erofs-utils "$work/mkimage.log" \
	go run ./build/cmd/mkimage -out "$work/out" -kernel "$work/bzImage" -kernel-info "$work/kernel.json" -toolchain "$work/image.lock"
