#!/bin/sh
# Regenerates the agent API's Go code from agent/api/v1/agent.proto with
# pinned generator versions. protoc comes from Debian's protobuf-compiler;
# the Go plugins are built at the pinned versions into a cache directory.
# The host's side is protoc-gen-go's and protoc-gen-go-ttrpc's (v1/*.pb.go);
# the agent's side, v1/wire/agent.wire.go, is protoc-gen-go-wire's, built
# from this module (api/protoc-gen-go-wire) each time.
#
# Usage: agent/api/generate.sh [DIR]   (from anywhere; `make generate` calls it)
# DIR (default: agent/api itself) is where v1/... are written; a test writes them
# elsewhere and compares them with the committed files.
set -eu

PROTOC_GEN_GO_VERSION=v1.36.11      # google.golang.org/protobuf
PROTOC_GEN_GO_TTRPC_VERSION=v1.2.10 # github.com/containerd/ttrpc

here=$(cd "$(dirname "$0")" && pwd)
out=$(mkdir -p "${1:-$here}" && cd "${1:-$here}" && pwd)
cache=${CONFGUEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/confguest}
bin=$cache/protoc-plugins/go-$PROTOC_GEN_GO_VERSION-ttrpc-$PROTOC_GEN_GO_TTRPC_VERSION
mkdir -p "$bin"

command -v protoc >/dev/null || { echo "generate.sh: protoc not found: apt-get install protobuf-compiler" >&2; exit 1; }
[ -x "$bin/protoc-gen-go" ] ||
	GOBIN=$bin GOFLAGS=-mod=mod go install google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION
[ -x "$bin/protoc-gen-go-ttrpc" ] ||
	GOBIN=$bin GOFLAGS=-mod=mod go install github.com/containerd/ttrpc/cmd/protoc-gen-go-ttrpc@$PROTOC_GEN_GO_TTRPC_VERSION

wirebin=$(mktemp -d)
trap 'rm -rf "$wirebin"' EXIT
(cd "$here" && go build -o "$wirebin/protoc-gen-go-wire" ./protoc-gen-go-wire)

cd "$here"
PATH=$wirebin:$bin:$PATH protoc -I . \
	--go_out=paths=source_relative:"$out" \
	--go-ttrpc_out=paths=source_relative:"$out" \
	--go-wire_out=paths=source_relative:"$out" \
	v1/agent.proto
# protoc-gen-go-ttrpc writes its header right above the package clause, where go doc takes
# it for the package comment; a blank line leaves that to doc.go.
sed -i '/^\/\/ source: v1\/agent.proto$/G' "$out/v1/agent_ttrpc.pb.go"
