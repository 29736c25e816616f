#!/usr/bin/env bash
# Regenerates wire/portierv1 from proto/portier/v1 with pinned generators:
# protoc-gen-go from the module proxy at the version below, protoc from
# Debian's protobuf-compiler (apt-get install protobuf-compiler).
set -euo pipefail
PROTOC_GEN_GO_VERSION=v1.36.12
root=$(cd "$(dirname "$0")/.." && pwd)
command -v protoc >/dev/null || { echo "genproto: protoc not found; apt-get install protobuf-compiler" >&2; exit 1; }
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
GOBIN=$bin go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
cd "$root"
PATH=$bin:$PATH protoc --proto_path=proto \
  --go_out=. --go_opt=module=github.com/portier/portier \
  proto/portier/v1/*.proto
