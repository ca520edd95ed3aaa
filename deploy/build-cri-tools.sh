#!/usr/bin/env bash
# build-cri-tools.sh TOOL: builds TOOL (crictl or critest) of Kubernetes cri-tools at a pinned
# version from the Go module proxy and prints the path of the binary. The result is cached
# under ${CONFGUEST_CACHE:-$HOME/.cache/confguest}/TOOL-<version>/.
#
# The version ($CRI_TOOLS_VERSION, default v1.30.0) matches the CRI of the containerd the
# tests use: Debian bookworm's containerd 1.6.20 speaks CRI v1, which cri-tools v1.30 tests.
#
# `go install sigs.k8s.io/cri-tools/cmd/crictl@<version>` refuses the module because its
# go.mod has replace directives, so the module source is downloaded, copied out of the
# read-only module cache and built as the main module (its vendor/ folder holds only
# modules.txt in the module zip, so it is dropped and the dependencies come from the proxy).
# critest is a Go test binary (`go test -c ./cmd/critest`, as cri-tools' Makefile builds it).
set -euo pipefail
tool="${1:?usage: build-cri-tools.sh crictl|critest}"
version="${CRI_TOOLS_VERSION:-v1.30.0}"
case "$tool" in
crictl | critest) ;;
*)
	echo "build-cri-tools: unknown tool $tool: want crictl or critest" >&2
	exit 1
	;;
esac
cache="${CONFGUEST_CACHE:-$HOME/.cache/confguest}/$tool-$version"
if [ -x "$cache/$tool" ]; then
	echo "$cache/$tool"
	exit 0
fi
mkdir -p "$cache"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
echo "build-cri-tools: building $tool $version from the Go module proxy" >&2
dir="$(GOFLAGS= go mod download -json "sigs.k8s.io/cri-tools@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -n "$dir" ] || { echo "build-cri-tools: go mod download sigs.k8s.io/cri-tools@$version gave no source: check GOPROXY and the version" >&2; exit 1; }
cp -r "$dir" src
chmod -R u+w src
rm -rf src/vendor
cd src
ldflags="-s -w -X github.com/kubernetes-sigs/cri-tools/pkg/version.Version=$version"
if [ "$tool" = critest ]; then
	CGO_ENABLED=0 GOFLAGS=-mod=mod go test -c -trimpath -ldflags "$ldflags" -o "$cache/$tool.tmp" ./cmd/critest >&2
else
	CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$cache/$tool.tmp" ./cmd/crictl >&2
fi
mv "$cache/$tool.tmp" "$cache/$tool"
echo "$cache/$tool"
