#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# deploy/check-k8s.sh - the Kubernetes files, checked offline (no cluster): renders deploy/k8s and
# deploy/k8s/broker with `kubectl kustomize` and takes deploy/k8s/examples/*.yaml as they are, then
#   - validates every object against the API schemas, unknown fields included
#     (deploy/k8s-schema/validate.mjs: node + the npm packages scripts/deps installs there);
#   - checks every pod against Pod Security "restricted" (deploy/check-pss.py).
# One line per object and check; exit 1 on any failure. ctest k8s_check (label lint) runs it.
#
#   deploy/check-k8s.sh
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in kubectl node /usr/bin/python3; do
  command -v "$tool" >/dev/null || { echo "check-k8s: $tool not found (deploy/README.md, Checks)" >&2; exit 1; }
done
if [ ! -d deploy/k8s-schema/node_modules/kubernetes-models ]; then
  echo "check-k8s: deploy/k8s-schema/node_modules missing: run scripts/deps --tests (npm ci there)" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for k in deploy/k8s deploy/k8s/broker; do
  kubectl kustomize "$k" >"$tmp/$(echo "$k" | tr / _).yaml"
done
cp deploy/k8s/examples/*.yaml "$tmp/"
for f in "$tmp"/*.yaml; do printf -- '---\n'; cat "$f"; done >"$tmp/all"
fail=0
echo "== schema (kubernetes-models $(node -p 'require("./deploy/k8s-schema/node_modules/kubernetes-models/package.json").version'))"
node deploy/k8s-schema/validate.mjs <"$tmp/all" || fail=1
echo "== Pod Security: restricted"
/usr/bin/python3 deploy/check-pss.py "$tmp/all" || fail=1
exit $fail
