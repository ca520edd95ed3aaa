#!/usr/bin/env bash
# Builds crictl v1.30.0 (or $CRICTL_VERSION) from the Go module proxy and prints the path of
# the binary; see build-cri-tools.sh.
set -euo pipefail
CRI_TOOLS_VERSION="${CRICTL_VERSION:-${CRI_TOOLS_VERSION:-v1.30.0}}" exec "$(dirname "$(readlink -f "$0")")/build-cri-tools.sh" crictl
