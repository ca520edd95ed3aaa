#!/usr/bin/env bash
# Builds crictl (Kubernetes cri-tools) at a pinned version from the Go module proxy and
# prints the path of the binary. The result is cached under
# ${CONFGUEST_CACHE:-$HOME/.cache/confguest}/crictl-<version>/.
#
# `go install sigs.k8s.io/cri-tools/cmd/crictl@<version>` refuses the module because its
# go.mod has replace directives, so the module source is downloaded, copied out of the
# read-only module cache and built as the main module (its vendor/ folder holds only
# modules.txt in the module zip, so it is dropped and the dependencies come from the proxy).
set -euo pipefail
version="${CRICTL_VERSION:-v1.30.0}"
cache="${CONFGUEST_CACHE:-$HOME/.cache/confguest}/crictl-$version"
if [ -x "$cache/crictl" ]; then
	echo "$cache/crictl"
	exit 0
fi
mkdir -p "$cache"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
dir="$(GOFLAGS= go mod download -json "sigs.k8s.io/cri-tools@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -n "$dir" ] || { echo "build-crictl: go mod download sigs.k8s.io/cri-tools@$version gave no source" >&2; exit 1; }
cp -r "$dir" src
chmod -R u+w src
rm -rf src/vendor
cd src
CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w -X github.com/kubernetes-sigs/cri-tools/pkg/version.Version=$version" -o "$cache/crictl.tmp" ./cmd/crictl >&2
mv "$cache/crictl.tmp" "$cache/crictl"
echo "$cache/crictl"
