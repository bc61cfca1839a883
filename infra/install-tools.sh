#!/usr/bin/env bash
# Installs the dev-stack servers sa-engine runs against: the Temporal CLI (dev server + Web UI) and
# versitygw, a real S3-compatible server (Apache-2.0, posix backend). Both are built from pinned
# versions through the Go module proxy into a cache outside the clone, so a second run is a no-op
# and every clone on the machine shares one build.
set -euo pipefail

# Pinned versions live in infra/tools.json (infra/tools.ts reads the same file to find the binaries).
# Temporal CLI stays at v1.5.1: newer tags do not `go install`.
tools_json="$(dirname "$0")/tools.json"
tool_field() { node -p "require(process.argv[1]).$1.$2" "$(realpath "$tools_json")"; }

cache_dir="${SAE_CACHE_DIR:-$HOME/.cache/sa-engine}"
tools_dir="$cache_dir/tools"

install_go_tool() { # name module version
  local name=$1 module=$2 version=$3
  local dest="$tools_dir/$name-$version"
  if [[ -x "$dest/$name" ]]; then
    echo "install-tools: $name $version already at $dest/$name"
    return
  fi
  if ! command -v go >/dev/null 2>&1; then
    cat >&2 <<MSG
install-tools: Go is not installed, and $name $version is built from source through the Go module proxy.
  Install Go 1.22 or newer (https://go.dev/doc/install, or your package manager: apt-get install golang)
  and run this again, or point SAE_TEMPORAL_BIN / SAE_S3_SERVER_BIN at binaries you already have.
MSG
    exit 1
  fi
  echo "install-tools: building $name $version (go install $module@$version) ..."
  mkdir -p "$dest.partial"
  GOBIN="$dest.partial" GOFLAGS=-trimpath go install "$module@$version"
  rm -rf "$dest" && mv "$dest.partial" "$dest"   # only a finished build ever lands at $dest
  echo "install-tools: $name $version built at $dest/$name"
}

# `install-tools.sh temporal` builds just that one; no arguments, both.
tools=("$@")
[[ ${#tools[@]} -gt 0 ]] || tools=(temporal versitygw)
for tool in "${tools[@]}"; do
  install_go_tool "$tool" "$(tool_field "$tool" module)" "$(tool_field "$tool" version)"
done
