#!/bin/sh
# Regenerates the agent API's Go code from agent/api/v1/agent.proto with
# pinned generator versions. protoc comes from Debian's protobuf-compiler;
# the Go plugins are built at the pinned versions into a cache directory.
#
# Usage: agent/api/generate.sh   (from anywhere; `make generate` calls it)
set -eu

PROTOC_GEN_GO_VERSION=v1.36.11      # google.golang.org/protobuf
PROTOC_GEN_GO_TTRPC_VERSION=v1.2.10 # github.com/containerd/ttrpc

here=$(cd "$(dirname "$0")" && pwd)
cache=${CONFGUEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/confguest}
bin=$cache/protoc-plugins/go-$PROTOC_GEN_GO_VERSION-ttrpc-$PROTOC_GEN_GO_TTRPC_VERSION
mkdir -p "$bin"

command -v protoc >/dev/null || { echo "generate.sh: protoc not found: apt-get install protobuf-compiler" >&2; exit 1; }
[ -x "$bin/protoc-gen-go" ] ||
	GOBIN=$bin GOFLAGS=-mod=mod go install google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION
[ -x "$bin/protoc-gen-go-ttrpc" ] ||
	GOBIN=$bin GOFLAGS=-mod=mod go install github.com/containerd/ttrpc/cmd/protoc-gen-go-ttrpc@$PROTOC_GEN_GO_TTRPC_VERSION

cd "$here"
PATH=$bin:$PATH protoc -I . \
	--go_out=paths=source_relative:. \
	--go-ttrpc_out=paths=source_relative:. \
	v1/agent.proto
# protoc-gen-go-ttrpc writes its header right above the package clause, where go doc takes
# it for the package comment; a blank line leaves that to doc.go.
sed -i '/^\/\/ source: v1\/agent.proto$/G' v1/agent_ttrpc.pb.go
