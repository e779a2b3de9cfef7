"""bf16 against fp32 feature extraction on this CPU: items/s and per-item agreement (issue 14, item 2).

    python benchmarks/extract_dtype.py --encoder qwen2.5-1.5b --dataset ml-1m --limit 192 --threads 2

The same items are encoded three ways, one after the other on the same cores: fp32 weights (the
baseline), bf16 weights (`dtype=bfloat16` at load: half the memory), and fp32 weights under
`torch.autocast("cpu", bfloat16)`. Agreement is the cosine between each item's bf16 and fp32 vector,
raw and after centring on the fp32 item mean (what a teacher's correlation sees for decoder LLMs,
whose raw cosines crowd into 0.6-0.99). The registry entry switches to bf16 only where the minimum
per-item cosine is >= 0.99 and it is faster. Written to results/speed/extract-dtype-<encoder>.md.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import torch

from encoders.extract import items_from_source
from encoders.models import load_encoder
from encoders.registry import get_spec

ROOT = Path(__file__).resolve().parents[1]


def encode_all(encoder, texts: list[str], batch_size: int, autocast: bool) -> tuple[np.ndarray, float]:
    context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with context:
        encoder.encode(texts[:batch_size])  # warm-up: one batch, not timed
        start = time.perf_counter()
        parts = [encoder.encode(texts[i:i + batch_size]).numpy() for i in range(0, len(texts), batch_size)]
    return np.concatenate(parts).astype(np.float32), time.perf_counter() - start


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="qwen2.5-1.5b")
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--limit", type=int, default=192, help="items to encode (the first N item texts)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=["float32", "bfloat16", "autocast"],
                        choices=["float32", "bfloat16", "autocast"])
    parser.add_argument("--out", default=str(ROOT / "results" / "speed"))
    args = parser.parse_args()
    args.modes = ["float32"] + [m for m in args.modes if m != "float32"]  # fp32 is the baseline of every ratio
    torch.set_num_threads(args.threads)
    texts = items_from_source(args.dataset).texts[1:args.limit + 1]
    spec = get_spec(args.encoder)
    results = {}
    for mode in args.modes:
        dtype = "bfloat16" if mode == "bfloat16" else "float32"
        start = time.perf_counter()
        encoder = load_encoder(dataclasses.replace(spec, dtype=dtype), "cpu")
        load = time.perf_counter() - start
        vectors, seconds = encode_all(encoder, texts, args.batch_size, autocast=mode == "autocast")
        del encoder
        results[mode] = (vectors, seconds, load)
        print(f"{mode}: load {load:.1f} s, {len(texts) / seconds:.2f} items/s", flush=True)
    base, base_seconds, _ = results["float32"]
    mean = base.mean(0)
    lines = [f"# bf16 against fp32 extraction: {args.encoder} on {args.dataset}", "",
             f"{len(texts)} item texts (the first {len(texts)} items), batch {args.batch_size}, {args.threads} torch "
             f"threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}, CPU "
             f"(avx512_bf16; no AMX), torch {torch.__version__}. Pooling: {spec.resolved_pooling}. Cosine: each "
             "item's vector against its fp32 vector; centred: both minus the fp32 item mean.", "",
             "| mode | model load s | items/s | speed-up | cosine min | cosine mean | centred cosine min | "
             "centred cosine mean |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for mode, (vectors, seconds, load) in results.items():
        raw, centred = cosines(vectors, base), cosines(vectors - mean, base - mean)
        lines.append(f"| {mode} | {load:.1f} | {len(texts) / seconds:.2f} | {base_seconds / seconds:.2f}x | "
                     f"{raw.min():.4f} | {raw.mean():.4f} | {centred.min():.4f} | {centred.mean():.4f} |")
    print("\n".join(lines))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"extract-dtype-{args.encoder}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
