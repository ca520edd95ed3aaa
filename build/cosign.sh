#!/usr/bin/env bash
# cosign.sh: builds sigstore's cosign at a pinned version from the Go module proxy and prints
# the path of the binary, cached under ${CONFGUEST_CACHE:-$HOME/.cache/confguest}/cosign-<version>/.
# The signed-image tests (qemu-tests/signed_test.go) sign and verify with it: the statement
# confguest's agent checks must be the one users make with the tool they already use.
# A cold build takes several minutes on 2 cores.
set -euo pipefail
version="${COSIGN_VERSION:-v2.6.5}"
cache="${CONFGUEST_CACHE:-$HOME/.cache/confguest}/cosign-$version"
if [ -x "$cache/cosign" ]; then
	echo "$cache/cosign"
	exit 0
fi
mkdir -p "$cache"
echo "cosign.sh: building cosign $version from the Go module proxy" >&2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# go install pkg@version builds outside any module: this clone's go.mod does not apply.
(cd "$work" && CGO_ENABLED=0 GOFLAGS= GOBIN="$work" go install -trimpath -ldflags '-s -w' \
	"github.com/sigstore/cosign/v2/cmd/cosign@$version" >&2)
mv "$work/cosign" "$cache/cosign"
echo "$cache/cosign"
