"""Feature-extraction throughput of the offline encoders on this CPU, and the cache-hit time.

    python benchmarks/extract_speed.py --dataset ml-1m --threads 2

Text encoders read the data set's item texts; the image encoder reads title cards rendered with PIL
(MovieLens ships no images), one per item. Each encoder extracts into a fresh temporary cache, then the
same request is timed again (a cache hit: open + checksum of the stored array). Written to
results/speed/extraction-<dataset>.md.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from encoders.extract import ItemContent, extract_features, items_from_source
from encoders.registry import get_spec

ROOT = Path(__file__).resolve().parents[1]


def title_cards(texts: list[str], folder: Path, size: int = 224) -> list[str]:
    from PIL import Image, ImageDraw

    paths = [""]
    for index, text in enumerate(texts[1:], start=1):
        hue = hash(text.split("Genres:")[-1]) % 255
        image = Image.new("RGB", (size, size), (hue, 255 - hue, (hue * 7) % 255))
        ImageDraw.Draw(image).text((8, size // 2), text[:40], fill=(255, 255, 255))
        path = folder / f"{index}.png"
        image.save(path)
        paths.append(str(path))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--encoders", nargs="+", default=["minilm-l6", "smollm2-135m", "efficientnet-lite0"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=0, help="only the first N items (0 = all)")
    parser.add_argument("--out", default=str(ROOT / "results" / "speed"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    items = items_from_source(args.dataset)
    if args.limit:
        items = ItemContent(items.dataset, items.texts[:args.limit + 1], items.images[:args.limit + 1])
    lines = [f"# Feature extraction on {args.dataset} ({len(items.texts) - 1:,} items)", "",
             f"CPU, {args.threads} torch threads, fp32, batch {args.batch_size}, OMP_WAIT_POLICY="
             f"{os.environ.get('OMP_WAIT_POLICY', 'default')}. Text: the item texts (title, year, genres); image: "
             f"224 px title cards drawn with PIL.", "",
             "| encoder | params | dim | model load s | extraction s | items/s | cache hit s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        cards = None
        for name in args.encoders:
            spec = get_spec(name)
            content = items
            if spec.modality == "image":
                cards = cards or title_cards(items.texts, Path(tmp))
                content = ItemContent(items.dataset, items.texts, cards)
            cache = Path(tmp) / "cache"
            entry = extract_features(content, spec, cache_dir=cache, batch_size=args.batch_size, progress=True)
            start = time.perf_counter()
            extract_features(content, spec, cache_dir=cache, batch_size=args.batch_size, progress=False)
            hit = time.perf_counter() - start
            m = entry.manifest
            row = (f"| {name} | {spec.params / 1e6:.1f}M | {m['dim']} | {m['load_seconds']:.1f} | "
                   f"{m['extract_seconds']:.1f} | {m['items_per_second']:.1f} | {hit:.3f} |")
            lines.append(row)
            print(row, flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"extraction-{args.dataset}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
