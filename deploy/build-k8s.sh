#!/usr/bin/env bash
# build-k8s.sh: builds kube-apiserver, kubelet and kubectl of one pinned Kubernetes release
# from the Go module proxy and prints the folder holding them:
#   ${CONFGUEST_CACHE:-$HOME/.cache/confguest}/k8s/<version>/{kube-apiserver,kubelet,kubectl}
# A folder whose SHA256SUMS still matches its binaries is reused as it is.
#
# The version ($K8S_VERSION, default v1.34.2) is one k8s.io/kubernetes module release. That
# module's go.mod replaces its ~31 staging modules (k8s.io/api, k8s.io/client-go, ...) with
# ./staging/src/... paths, which are not in the module zip (nested modules are left out).
# So the source is copied out of the read-only module cache into a temporary folder, those
# replace lines are pointed at the published modules of the same release (v0.X.Y for
# v1.X.Y), and the commands are built as the main module. The vendor/ folder of the zip
# holds only modules.txt; it is dropped, as is go.work (it lists the staging folders), and
# dependencies come from the module proxy.
set -euo pipefail
version="${K8S_VERSION:-v1.34.2}"
case "$version" in
v1.*.*) staging="v0.${version#v1.}" ;;
*)
	echo "build-k8s: K8S_VERSION=$version: want a Kubernetes release such as v1.34.2" >&2
	exit 1
	;;
esac
cmds=(kube-apiserver kubelet kubectl)
cache="${CONFGUEST_CACHE:-$HOME/.cache/confguest}/k8s/$version"

if [ -f "$cache/SHA256SUMS" ] && (cd "$cache" && sha256sum --quiet -c SHA256SUMS >/dev/null 2>&1); then
	echo "$cache"
	exit 0
fi

start=$(date +%s)
mkdir -p "$cache"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "build-k8s: building ${cmds[*]} $version from the Go module proxy (staging modules at $staging)" >&2
dir="$(cd "$work" && GOFLAGS= go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -n "$dir" ] || { echo "build-k8s: go mod download k8s.io/kubernetes@$version gave no source: check GOPROXY and the version" >&2; exit 1; }
cp -r "$dir" "$work/src"
chmod -R u+w "$work/src"
rm -rf "$work/src/vendor" "$work/src/go.work" "$work/src/go.work.sum"
cd "$work/src"

# Point every "k8s.io/x => ./staging/src/k8s.io/x" at the published "k8s.io/x vX".
n=$(grep -c '=> \./staging/src/' go.mod || true)
[ "$n" -gt 0 ] || { echo "build-k8s: k8s.io/kubernetes@$version/go.mod has no staging replaces: this script does not know how to build it" >&2; exit 1; }
sed -i "s#=> \./staging/src/\([^[:space:]]*\)#=> \1 $staging#" go.mod
if grep -q '=> \./' go.mod; then
	echo "build-k8s: go.mod still has local replaces after rewriting $n staging ones:" >&2
	grep '=> \./' go.mod >&2
	exit 1
fi
echo "build-k8s: $n staging modules now come from the module proxy at $staging" >&2

# The version the binaries report (what hack/lib/version.sh stamps into a release build).
minor="${version#v1.}"
minor="${minor%%.*}"
x=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	x+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
	x+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off
# Resolve and record the sums of the published staging modules once, before the builds.
go mod download >&2
for c in "${cmds[@]}"; do
	t0=$(date +%s)
	go build -trimpath -ldflags "-s -w$x" -o "$cache/$c.tmp" "./cmd/$c" >&2
	echo "build-k8s: $c built in $(($(date +%s) - t0))s" >&2
done
for c in "${cmds[@]}"; do
	mv "$cache/$c.tmp" "$cache/$c"
done
(cd "$cache" && sha256sum "${cmds[@]}" >SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
"$cache/kubelet" --version >&2
echo "build-k8s: done in $(($(date +%s) - start))s ($(go env GOVERSION))" >&2
echo "$cache"
