# shellcheck shell=bash disable=SC2034  # the variables are for the scripts that source this
# Sourced by install.sh and check.sh: where the chart check's tools live, all outside the clone under
# ${SAE_CACHE_DIR:-~/.cache/sa-engine}/tools/ (shared by every clone on the machine).
#   helm        infra/install-tools.sh builds it from infra/tools.json ("helm"); SAE_HELM_BIN overrides
#   venv        kubernetes-validate + jsonschema, keyed on requirements.txt's hash
#   KEDA        the CRDs and temporal scaler source of the KEDA version in infra/tools.json ("keda")
chart_check_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$chart_check_dir/../.." && pwd)"
tools_json="$repo_root/infra/tools.json"
tools_dir="${SAE_CACHE_DIR:-$HOME/.cache/sa-engine}/tools"
tool_field() { node -p "require(process.argv[1]).$1.$2" "$tools_json"; }

helm_version="$(tool_field helm version)"
helm_bin="${SAE_HELM_BIN:-$tools_dir/helm-$helm_version/helm}"
keda_module="$(tool_field keda module)"
keda_version="$(tool_field keda version)"
keda_dir="$tools_dir/keda-$keda_version"
requirements="$chart_check_dir/requirements.txt"
venv_dir="$tools_dir/chart-check-$(sha256sum "$requirements" | cut -c1-12)"
