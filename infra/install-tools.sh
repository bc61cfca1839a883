#!/usr/bin/env bash
# Installs the dev-stack servers sa-engine runs against: the Temporal CLI (dev server + Web UI) and
# versitygw, a real S3-compatible server (Apache-2.0, posix backend); and helm, which checks the
# Kubernetes chart (infra/helm/sa-engine). All are built from pinned versions through the Go module
# proxy into a cache outside the clone, so a second run is a no-op and every clone on the machine
# shares one build. With no arguments it also installs the chart check's offline validators
# (infra/chart-check/install.sh: a small Python venv and KEDA's CRDs).
set -euo pipefail

# Pinned versions live in infra/tools.json (infra/tools.ts reads the same file to find the binaries).
# Temporal CLI stays at v1.5.1: newer tags do not `go install`. Its "keda" entry is no binary: the
# chart check reads KEDA's CRDs from that Go module (infra/chart-check/install.sh). An "ldflags" entry
# is passed to `go install`: helm's release Makefile sets its default Kubernetes version (for
# `helm template` and lint) from its client-go version (k8s.io/client-go v0.37 -> 1.37 for helm
# v3.22.1; update it with the helm version); without it a `go install`ed helm assumes Kubernetes 1.20.
tools_json="$(dirname "$0")/tools.json"
tool_field() { node -p "require(process.argv[1]).$1.$2 ?? ''" "$(realpath "$tools_json")"; }

cache_dir="${SAE_CACHE_DIR:-$HOME/.cache/sa-engine}"
tools_dir="$cache_dir/tools"

install_go_tool() { # name module version [ldflags]
  local name=$1 module=$2 version=$3 ldflags=${4:-}
  local dest="$tools_dir/$name-$version"
  if [[ -x "$dest/$name" ]]; then
    echo "install-tools: $name $version already at $dest/$name"
    return
  fi
  if ! command -v go >/dev/null 2>&1; then
    cat >&2 <<MSG
install-tools: Go is not installed, and $name $version is built from source through the Go module proxy.
  Install Go 1.22 or newer (https://go.dev/doc/install, or your package manager: apt-get install golang)
  and run this again, or point SAE_TEMPORAL_BIN / SAE_S3_SERVER_BIN / SAE_HELM_BIN at binaries you already have.
MSG
    exit 1
  fi
  echo "install-tools: building $name $version (go install $module@$version) ..."
  mkdir -p "$dest.partial"
  GOBIN="$dest.partial" GOFLAGS=-trimpath go install ${ldflags:+-ldflags="$ldflags"} "$module@$version"
  rm -rf "$dest" && mv "$dest.partial" "$dest"   # only a finished build ever lands at $dest
  echo "install-tools: $name $version built at $dest/$name"
}

# `install-tools.sh temporal` builds just that one (the CLI asks for the dev stack's missing
# servers this way); no arguments (`npm run setup`), every tool and the chart check's validators.
tools=("$@")
everything=false
if [[ ${#tools[@]} -eq 0 ]]; then
  tools=(temporal versitygw helm)
  everything=true
fi
for tool in "${tools[@]}"; do
  if [[ $tool == helm && -n "${SAE_HELM_BIN:-}" ]]; then
    echo "install-tools: helm is SAE_HELM_BIN=$SAE_HELM_BIN"
    continue
  fi
  install_go_tool "$tool" "$(tool_field "$tool" module)" "$(tool_field "$tool" version)" "$(tool_field "$tool" ldflags)"
done
if $everything; then
  bash "$(dirname "$0")/chart-check/install.sh"
fi
