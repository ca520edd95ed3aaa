#!/usr/bin/env bash
# debfetch.sh SUITE PACKAGE [VERSION [SHA256]]
#
# Fetches one Debian package from any suite (trixie, unstable, ...) without touching the
# system's apt configuration: it reuses the URI of the machine's configured Debian source,
# keeps private package lists under the cache, downloads the .deb with `apt-get download`
# and unpacks it with `dpkg-deb -x`. When VERSION and SHA256 are given, the download must
# match them exactly (the pin); otherwise the suite's current candidate is taken.
#
# Prints the unpacked directory on stdout. Beside it, <dir>.deb is the package and
# <dir>.info holds "name version sha256" for the build manifest.
# Cache: ${CONFGUEST_CACHE:-$HOME/.cache/confguest}/debs.
set -euo pipefail

suite=${1:?usage: debfetch.sh SUITE PACKAGE [VERSION [SHA256]]}
pkg=${2:?usage: debfetch.sh SUITE PACKAGE [VERSION [SHA256]]}
want_version=${3:-}
want_sha=${4:-}

cache=${CONFGUEST_CACHE:-$HOME/.cache/confguest}/debs
mkdir -p "$cache"

# A pinned package already unpacked and verified is reused without any network access.
if [ -n "$want_version" ] && [ -n "$want_sha" ]; then
	dir="$cache/${pkg}_${want_version//:/%3a}"
	if [ -f "$dir.info" ] && [ "$(cat "$dir.info")" = "$pkg $want_version $want_sha" ] && [ -d "$dir" ]; then
		echo "$dir"
		exit 0
	fi
fi

# The Debian archive URI of this machine: the first deb822 or one-line source that carries
# a "bookworm" (or any) suite of the main archive.
debian_uri() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk '
			/^URIs:/ { uri = $2 }
			/^Suites:/ { for (i = 2; i <= NF; i++) if ($i !~ /-security$/ && $i !~ /-updates$/) s = 1 }
			/^$/ { if (uri != "" && s) { print uri; exit } uri = ""; s = 0 }
			END { if (uri != "" && s) print uri }
		' "$f" | grep -v security | head -1 && return 0
	done
	if [ -f /etc/apt/sources.list ]; then
		awk '$1 == "deb" && $0 !~ /security/ { print ($2 ~ /^\[/ ? $3 : $2); exit }' /etc/apt/sources.list
	fi
}
uri=$(debian_uri | head -1)
if [ -z "$uri" ]; then
	echo "debfetch: no Debian archive source found in /etc/apt/sources.list{,.d}: configure one" >&2
	exit 1
fi

state="$cache/apt-$suite"
mkdir -p "$state/lists/partial" "$state/cache/archives/partial"
printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' "$uri" "$suite" > "$state/sources.list"
aptopts=(-o "Dir::State::Lists=$state/lists" -o "Dir::Etc::SourceList=$state/sources.list"
	-o "Dir::Etc::SourceParts=/dev/null" -o "Dir::Cache=$state/cache" -o "APT::Get::List-Cleanup=0"
	-o "Acquire::Languages=none" -o "APT::Sandbox::User=root")

# Refresh the suite's package list at most once a day.
stamp="$state/updated"
if [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +1440)" ]; then
	echo "debfetch: updating package list of $suite" >&2
	apt-get "${aptopts[@]}" update -qq >&2
	touch "$stamp"
fi

version=$want_version
if [ -z "$version" ]; then
	version=$(apt-cache "${aptopts[@]}" show "$pkg" 2>/dev/null | awk '/^Version:/ { print $2; exit }')
	if [ -z "$version" ]; then
		echo "debfetch: package $pkg not found in Debian $suite" >&2
		exit 1
	fi
fi

dir="$cache/${pkg}_${version//:/%3a}"
work=$(mktemp -d "$cache/.dl.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "debfetch: downloading $pkg $version from $suite" >&2
if ! (cd "$work" && apt-get "${aptopts[@]}" download -qq "$pkg=$version" >&2); then
	echo "debfetch: $pkg $version is not (or no longer) served by Debian $suite; update the pin in build/packages.lock" >&2
	exit 1
fi
deb=$(ls "$work"/*.deb)
sha=$(sha256sum "$deb" | cut -d' ' -f1)
if [ -n "$want_sha" ] && [ "$sha" != "$want_sha" ]; then
	echo "debfetch: $pkg $version: sha256 mismatch (want $want_sha, got $sha): refusing it" >&2
	exit 1
fi
rm -rf "$dir" "$dir.deb"
mkdir -p "$dir"
dpkg-deb -x "$deb" "$dir"
mv "$deb" "$dir.deb"
echo "$pkg $version $sha" > "$dir.info"
echo "$dir"
