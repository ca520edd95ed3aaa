#!/usr/bin/env bash
# setup.sh: installs what building and testing confguest needs on a Debian machine with Go:
# the Debian packages of build/apt-packages.txt (host suite) and the pinned packages of
# build/packages.lock (other suites, unpacked into the cache, never installed system-wide).
# Fast when everything is present.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")

mapfile -t pkgs < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$here/apt-packages.txt" | awk '{print $1}')
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	echo "setup: installing ${missing[*]}" >&2
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# Pinned packages from other Debian suites (verified by sha256, unpacked into the cache).
awk '!/^#/ && NF == 4 { print $2 }' "$here/packages.lock" | while read -r p; do
	"$here/debpin.sh" "$p" >/dev/null
done
