"""The GPU path in one prepared run (issue 14, item 6): one line per check, for a machine with a GPU.

    python benchmarks/gpu_check.py                     # all checks, ~5 minutes on one H100/H200
    python benchmarks/gpu_check.py --encoders smollm2-135m qwen2.5-1.5b --limit 2048

Checks, each printed as one `check: ... ` line (and all of them written to --out as JSON):
- device: the CUDA device, its bf16 support, torch / CUDA versions.
- matmul: measured bf16 matmul TFLOP/s (8192^3), the ceiling the forward-pass floor is computed from.
- extract <encoder>: bf16 extraction of the data set's item texts through the users' code path
  (encoders.extract.extract_features, into a temporary cache): items/s, tokens/s, the forward-pass
  floor (2 x params x tokens / measured matmul TFLOP/s) and the achieved fraction of it; and the
  per-item cosine of the bf16 features against fp32 on the same GPU (min over items).
- packing: the `smoke` grid through the sweep with 0.25 GPU per trial and 8 seeds (24 trials): the
  concurrency reached (the trials' summed lengths over the sweep's wall time; 1 = one after another) and
  the device each ran on. On the device machine pass `--out $OUT/gpu-check.json` to get the JSON back.
Without a CUDA device it prints one line saying that no check has run, and exits 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def line(name: str, **values) -> dict:
    print(f"check: {name}: " + ", ".join(f"{k} {v}" for k, v in values.items()), flush=True)
    return {"check": name, **values}


def matmul_tflops(n: int = 8192, repeats: int = 20) -> float:
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e12


def check_extraction(name: str, texts: list[str], dataset: str, batch_size: int, peak_tflops: float) -> dict:
    from encoders.extract import ItemContent, extract_features
    from encoders.models import load_encoder
    from encoders.registry import get_spec

    content = ItemContent(f"{dataset}-gpucheck", [""] + texts, [""] * (len(texts) + 1))
    features = {}
    for dtype in ("float32", "bfloat16"):  # both through the users' path: same item order, same batches
        spec = dataclasses.replace(get_spec(name), dtype=dtype)
        encoder = load_encoder(spec, "cuda")
        encoder.encode(texts[:batch_size])  # warm-up: CUDA context and kernels, not timed
        torch.cuda.synchronize()
        with tempfile.TemporaryDirectory() as cache:
            entry = extract_features(content, spec, cache_dir=cache, batch_size=batch_size, device="cuda",
                                     progress=False, encoder=encoder)
            features[dtype] = (np.asarray(entry.features[1:], dtype=np.float32), entry.manifest)
        if dtype == "bfloat16":
            tokens = sum(len(ids) for ids in encoder.tokenizer(texts, truncation=True,
                                                                max_length=spec.max_tokens)["input_ids"])
        del encoder
        torch.cuda.empty_cache()
    (bf16, manifest), (fp32, _) = features["bfloat16"], features["float32"]
    cosine = (bf16 * fp32).sum(1) / (np.linalg.norm(bf16, axis=1) * np.linalg.norm(fp32, axis=1) + 1e-12)
    seconds = manifest["extract_seconds"]
    # the floor counts every parameter (embeddings included, which cost no FLOPs): a slight overestimate
    floor = 2 * spec.params * tokens / (peak_tflops * 1e12)
    return line(f"extract {name}", items=len(texts), items_per_s=round(len(texts) / seconds, 1),
                tokens_per_s=round(tokens / seconds), seconds=round(seconds, 2), floor_seconds=round(floor, 3),
                fraction_of_floor=round(floor / seconds, 3), compute_dtype=manifest["compute_dtype"],
                cosine_vs_fp32_min=round(float(cosine.min()), 4))


def check_packing(gpus_per_trial: float, seeds: int) -> dict:
    with tempfile.TemporaryDirectory() as storage:
        command = [sys.executable, "-m", "harness.sweep", "--grid", "smoke", "--storage", storage, "--no-report",
                   "--gpus-per-trial", str(gpus_per_trial), "--seeds", *map(str, range(seeds))]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - start
        records = [json.loads(p.read_text()) for p in Path(storage, "records").glob("*.json")]
    if done.returncode != 0 or not records:
        return line("packing", ok=False, returncode=done.returncode, error=done.stderr.strip().splitlines()[-1:])
    # trials overlapped when their summed lengths exceed the sweep's wall time (1 = one after another)
    busy = sum((r.get("timing") or {}).get("trial_seconds") or 0.0 for r in records)
    devices = sorted({r["runtime"]["device"] for r in records})
    return line("packing", trials=len(records), gpus_per_trial=gpus_per_trial,
                concurrency=round(busy / wall, 2), devices="/".join(devices), wall_seconds=round(wall, 1),
                ok=busy / wall > 1.5 and all(d.startswith("cuda") for d in devices))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--encoders", nargs="+", default=["smollm2-135m", "qwen2.5-1.5b"])
    parser.add_argument("--limit", type=int, default=0, help="only the first N items (0 = all)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--gpus-per-trial", type=float, default=0.25)
    parser.add_argument("--packing-seeds", type=int, default=8)
    parser.add_argument("--out", default=str(ROOT / "results" / "speed" / "gpu-check.json"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("check: device: no CUDA device (torch.cuda.is_available() is False): no GPU check has run", flush=True)
        return 2
    from encoders.extract import items_from_source

    checks = [line("device", name=torch.cuda.get_device_name(0), bf16=torch.cuda.is_bf16_supported(),
                   torch=torch.__version__, cuda=torch.version.cuda, host=os.uname().nodename)]
    peak = matmul_tflops()
    checks.append(line("matmul", bf16_tflops=round(peak, 1)))
    try:
        texts = items_from_source(args.dataset).texts[1:]
        texts = texts[:args.limit] if args.limit else texts
    except Exception as err:  # noqa: BLE001 - e.g. the data set's package is missing on this machine
        checks.append(line("data", ok=False, error=f"{type(err).__name__}: {str(err).splitlines()[0]}"))
        texts = []
    for name in args.encoders if texts else []:
        try:
            checks.append(check_extraction(name, texts, args.dataset, args.batch_size, peak))
        except Exception as err:  # noqa: BLE001 - one failing check (an encoder not installed) must not end the run
            checks.append(line(f"extract {name}", ok=False, error=f"{type(err).__name__}: {str(err).splitlines()[0]}"))
    try:
        checks.append(check_packing(args.gpus_per_trial, args.packing_seeds))
    except Exception as err:  # noqa: BLE001
        checks.append(line("packing", ok=False, error=f"{type(err).__name__}: {err}"))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(checks, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
