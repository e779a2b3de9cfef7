#!/usr/bin/env bash
# Regenerate every committed report from its committed records and say whether each is byte-identical.
#   bash scripts/regenerate_reports.sh          compare only (writes to a temporary folder)
#   bash scripts/regenerate_reports.sh --write  also write the regenerated reports into results/
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
for records in results/*/records; do
  store=$(dirname "$records")
  name=$(basename "$store")
  [[ -f "$store/README.md" ]] || continue  # a store without a committed report (e.g. an Optuna search)
  python -m harness.report --results "$store" --out "$tmp/$name" > /dev/null
  if diff -rq -x records -x search -x checkpoints -x ray "$tmp/$name" "$store" > /dev/null; then
    echo "$name: byte-identical"
  else
    echo "$name: DIFFERS"; { diff -rq -x records -x search -x checkpoints -x ray "$tmp/$name" "$store" || true; } | head -5; status=1
  fi
  if [[ "${1:-}" == "--write" ]]; then python -m harness.report --results "$store" --out "$store" > /dev/null; fi
done
exit $status
