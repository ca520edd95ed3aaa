#!/usr/bin/env bash
# setup.sh: installs what building and testing confguest needs on a Debian machine with Go:
# the Debian packages of build/apt-packages.txt (host suite), the build tools at the exact
# versions of build/toolchain.lock (each .deb checked against its pinned sha256 before it is
# installed), and the pinned packages of build/packages.lock (other suites, unpacked into the
# cache, never installed system-wide). Fast when everything is present.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
updated=""
apt_update() {
	[ -n "$updated" ] || $sudo apt-get update -qq
	updated=1
}
installed_version() {
	dpkg-query -W -f='${db:Status-Abbrev} ${Version}' "$1" 2>/dev/null | awk '$1 == "ii" { print $2 }'
}

mapfile -t pkgs < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$here/apt-packages.txt" | awk '{print $1}')
missing=()
for p in "${pkgs[@]}"; do
	[ -n "$(installed_version "$p")" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "setup: installing ${missing[*]}" >&2
	apt_update
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# The build tools at their pinned versions (build/toolchain.lock): the image builders refuse
# any other. A package at another version is replaced by the pinned .deb, downloaded from
# the machine's Debian archive and checked against the pinned sha256.
lock="$here/toolchain.lock"
repin=()
while read -r p version sha _; do
	if [ "$p" = go ]; then
		have=$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null || echo "no go")
		if [ "$have" != "$version" ]; then
			echo "setup: the Go toolchain is $have, build/toolchain.lock pins $version: install $version (the go.dev release for linux-amd64)" >&2
			exit 1
		fi
		continue
	fi
	[ "$(installed_version "$p")" = "$version" ] || repin+=("$p $version $sha")
done < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$lock")
if [ ${#repin[@]} -gt 0 ]; then
	dl=$(mktemp -d)
	trap 'rm -rf "$dl"' EXIT
	apt_update
	debs=()
	for line in "${repin[@]}"; do
		read -r p version sha <<<"$line"
		echo "setup: installing $p $version (pinned in build/toolchain.lock; installed: $(installed_version "$p" || true))" >&2
		if ! (cd "$dl" && apt-get download -qq -o APT::Sandbox::User=root "$p=$version" >&2); then
			echo "setup: $p $version is not served by this machine's Debian archive: fetch that .deb from Debian's snapshot archive (sha256 $sha) and install it, or update the pin together with build/published.txt" >&2
			exit 1
		fi
		deb=$(ls "$dl/${p}_"*.deb)
		got=$(sha256sum "$deb" | cut -d' ' -f1)
		if [ "$got" != "$sha" ]; then
			echo "setup: $deb: sha256 $got, build/toolchain.lock pins $sha: refusing it" >&2
			exit 1
		fi
		debs+=("$deb")
	done
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends --allow-downgrades "${debs[@]}" >&2
fi

# Pinned packages from other Debian suites (verified by sha256, unpacked into the cache).
awk '!/^#/ && NF == 4 { print $2 }' "$here/packages.lock" | while read -r p; do
	"$here/debpin.sh" "$p" >/dev/null
done
