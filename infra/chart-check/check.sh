#!/usr/bin/env bash
# Checks the Helm chart infra/helm/sa-engine offline (no cluster, no network): helm lint, helm
# template, every manifest against the Kubernetes schemas (strict) and KEDA's CRDs, the temporal
# triggers against KEDA's scaler source. See check.py for the list.
#
#   infra/chart-check/check.sh                  every values set
#   infra/chart-check/check.sh selfhosted cloud just those
#   infra/chart-check/check.sh --installed      exit 0 when the tools are installed, else say which not
#
# The tools come from `npm run setup` (infra/install-tools.sh): helm, and through
# infra/chart-check/install.sh a venv with kubernetes-validate and KEDA's CRDs.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=paths.sh
source "$(dirname "${BASH_SOURCE[0]}")/paths.sh"

missing=()
[[ -x "$helm_bin" ]] || missing+=("helm $helm_version ($helm_bin)")
[[ -f "$venv_dir/.complete" ]] || missing+=("the chart-check venv ($venv_dir)")
[[ -f "$keda_dir/.complete" ]] || missing+=("KEDA $keda_version's CRDs ($keda_dir)")
if [[ ${#missing[@]} -gt 0 ]]; then
  {
    list="${missing[0]}"
    for item in "${missing[@]:1}"; do list+="; $item"; done
    echo "chart-check: not installed: $list."
    echo "  Run \`npm run setup\` (or \`bash infra/install-tools.sh\`; needs Go and Python 3)."
  } >&2
  exit 3
fi
if [[ "${1:-}" == --installed ]]; then
  echo "chart-check: helm at $helm_bin, venv at $venv_dir, KEDA CRDs at $keda_dir"
  exit 0
fi
exec "$venv_dir/bin/python" "$chart_check_dir/check.py" --helm "$helm_bin" --keda-dir "$keda_dir" "$@"
