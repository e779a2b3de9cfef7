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
- packing: the `smoke` grid through the sweep with 0.25 GPU per trial and 4 seeds (12 trials): how
  many trials ran at once (from the records' end times and lengths) and on which device.
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

    spec = dataclasses.replace(get_spec(name), dtype="bfloat16")
    content = ItemContent(f"{dataset}-gpucheck", [""] + texts, [""] * (len(texts) + 1))
    with tempfile.TemporaryDirectory() as cache:
        entry = extract_features(content, spec, cache_dir=cache, batch_size=batch_size, device="cuda", progress=False)
        bf16 = np.asarray(entry.features[1:], dtype=np.float32)
        manifest = entry.manifest
    fp32_encoder = load_encoder(dataclasses.replace(spec, dtype="float32"), "cuda")
    tokens = sum(len(ids) for ids in fp32_encoder.tokenizer(texts, truncation=True, max_length=spec.max_tokens)["input_ids"])
    fp32 = np.concatenate([fp32_encoder.encode(texts[i:i + batch_size]).numpy()
                           for i in range(0, len(texts), batch_size)])
    del fp32_encoder
    torch.cuda.empty_cache()
    cosine = (bf16 * fp32).sum(1) / (np.linalg.norm(bf16, axis=1) * np.linalg.norm(fp32, axis=1) + 1e-12)
    seconds = manifest["extract_seconds"]
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
    spans = []
    for record in records:
        end = time.mktime(time.strptime(record["created"], "%Y-%m-%dT%H:%M:%SZ"))
        spans.append((end - record["train_seconds_total"], end))
    most = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    devices = sorted({r["runtime"]["device"] for r in records})
    return line("packing", trials=len(records), gpus_per_trial=gpus_per_trial, most_at_once=most,
                devices="/".join(devices), wall_seconds=round(wall, 1),
                ok=most > 1 and all(d.startswith("cuda") for d in devices))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--encoders", nargs="+", default=["smollm2-135m", "qwen2.5-1.5b"])
    parser.add_argument("--limit", type=int, default=0, help="only the first N items (0 = all)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--gpus-per-trial", type=float, default=0.25)
    parser.add_argument("--packing-seeds", type=int, default=4)
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
    texts = items_from_source(args.dataset).texts[1:]
    texts = texts[:args.limit] if args.limit else texts
    for name in args.encoders:
        try:
            checks.append(check_extraction(name, texts, args.dataset, args.batch_size, peak))
        except (OSError, ValueError, RuntimeError, KeyError) as err:  # e.g. a ladder encoder not installed
            checks.append(line(f"extract {name}", ok=False, error=str(err).splitlines()[0]))
    checks.append(check_packing(args.gpus_per_trial, args.packing_seeds))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(checks, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
