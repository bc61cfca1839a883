#!/usr/bin/env bash
# Installs what infra/chart-check/check.sh needs besides helm (install-tools.sh builds helm), outside
# the clone (see paths.sh); a no-op when both are present:
#  - a Python venv with kubernetes-validate (bundled Kubernetes JSON schemas: validation is offline)
#    and jsonschema, from the exact pins of requirements.txt, keyed on that file's hash;
#  - KEDA's CRDs (ScaledObject, TriggerAuthentication) and its temporal scaler's source, copied out of
#    KEDA's Go module at the version pinned in infra/tools.json, fetched through the Go module proxy
#    (`go mod download` checks it against the Go checksum database).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=paths.sh
source "$(dirname "${BASH_SOURCE[0]}")/paths.sh"
PYTHON="${PYTHON:-python3}"
log() { echo "chart-check: $*"; }

install_venv() {
  if [[ -x "$venv_dir/bin/python" && -f "$venv_dir/.complete" ]]; then
    log "venv already at $venv_dir"
    return
  fi
  log "creating $venv_dir (kubernetes-validate, jsonschema) ..."
  rm -rf "$venv_dir.partial"
  "$PYTHON" -m venv "$venv_dir.partial"
  "$venv_dir.partial/bin/pip" install --disable-pip-version-check -q --no-deps -r "$requirements"
  "$venv_dir.partial/bin/pip" check >/dev/null
  touch "$venv_dir.partial/.complete"
  # Only a finished venv lands at $venv_dir. (Its console scripts keep the .partial path in their
  # shebang lines; check.sh runs `$venv_dir/bin/python`, which works from anywhere.)
  rm -rf "$venv_dir" && mv "$venv_dir.partial" "$venv_dir"
  log "venv ready at $venv_dir"
}

install_keda() {
  local files=(config/crd/bases/keda.sh_scaledobjects.yaml config/crd/bases/keda.sh_triggerauthentications.yaml
    pkg/scalers/temporal_scaler.go)
  if [[ -f "$keda_dir/.complete" ]]; then
    log "KEDA $keda_version CRDs already at $keda_dir"
    return
  fi
  if ! command -v go >/dev/null 2>&1; then
    echo "chart-check: Go is needed to fetch KEDA $keda_version's CRDs through the Go module proxy; install Go 1.22+ and rerun" >&2
    exit 1
  fi
  log "fetching $keda_module@$keda_version through the Go module proxy ..."
  local info dir zip
  # Exits non-zero when it cannot extract the module, but its JSON still says where the zip is.
  info="$(cd "$tools_dir" && { go mod download -json "$keda_module@$keda_version" || true; })"
  dir="$(node -e 'const i = JSON.parse(process.argv[1]); process.stdout.write(i.Dir ?? "")' "$info")"
  zip="$(node -e 'const i = JSON.parse(process.argv[1]); process.stdout.write(i.Zip ?? "")' "$info")"
  rm -rf "$keda_dir.partial" && mkdir -p "$keda_dir.partial"
  if [[ -n "$dir" ]]; then
    for f in "${files[@]}"; do cp "$dir/$f" "$keda_dir.partial/$(basename "$f")"; done
  elif [[ -n "$zip" && -f "$zip" ]]; then
    # An older Go refuses to extract a module whose go.mod asks for a newer Go ("requires go >= ..."),
    # but has downloaded and verified the zip: take the files from it.
    "$PYTHON" - "$zip" "$keda_module@$keda_version" "$keda_dir.partial" "${files[@]}" <<'PY'
import os, sys, zipfile
zip_path, prefix, out, *files = sys.argv[1:]
with zipfile.ZipFile(zip_path) as z:
    for f in files:
        with open(os.path.join(out, os.path.basename(f)), "wb") as dst:
            dst.write(z.read(f"{prefix}/{f}"))
PY
  else
    echo "chart-check: go mod download $keda_module@$keda_version failed:" >&2
    echo "$info" >&2
    exit 1
  fi
  touch "$keda_dir.partial/.complete"
  rm -rf "$keda_dir" && mv "$keda_dir.partial" "$keda_dir"
  log "KEDA $keda_version CRDs and temporal scaler source at $keda_dir"
}

mkdir -p "$tools_dir"
install_venv
install_keda
