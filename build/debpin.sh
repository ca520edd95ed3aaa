#!/usr/bin/env bash
# debpin.sh PACKAGE: fetches PACKAGE at the version and sha256 pinned in build/packages.lock
# and prints its unpacked directory (see debfetch.sh).
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
pkg=${1:?usage: debpin.sh PACKAGE}
read -r suite _ version sha < <(awk -v p="$pkg" '$2 == p { print; exit }' "$here/packages.lock") || true
if [ -z "${suite:-}" ]; then
	echo "debpin: $pkg has no pin in build/packages.lock" >&2
	exit 1
fi
exec "$here/debfetch.sh" "$suite" "$pkg" "$version" "$sha"
