"""Data sets from the command line: statistics, image fetching, export.

    python -m harness.data ml-100k ml-1m [--user-k 5 --item-k 5] [--out results/datasets.md]   (statistics)
    python -m harness.data images --dataset amazon2023-All_Beauty --out data/images/All_Beauty [--workers 16]
    python -m harness.data export --dataset ml-100k --format recbole --out exports/ml-100k
"""
from __future__ import annotations

import argparse
import json
import sys

from harness.data import DataError, PreprocessOptions, load_dataset, stats_table

COMMANDS = ("stats", "images", "export")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user-k", type=int, default=5)
    parser.add_argument("--item-k", type=int, default=5)
    parser.add_argument("--dedup", default="exact", choices=["exact", "pair"])
    parser.add_argument("--data-dir", default=None)


def _options(args) -> PreprocessOptions:
    return PreprocessOptions(args.user_k, args.item_k, args.dedup)


def stats(argv) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.data", description="print data set statistics")
    parser.add_argument("datasets", nargs="+")
    _common(parser)
    parser.add_argument("--out", default=None, help="also write the Markdown table here")
    args = parser.parse_args(argv)
    all_stats = [load_dataset(n, _options(args), data_dir=args.data_dir, verbose=False).stats() for n in args.datasets]
    table = (f"Statistics after {args.user_k}/{args.item_k}-core filtering (dedup: {args.dedup}).\n\n"
             + stats_table(all_stats) + "\n")
    print(table)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(table)
    return 0


def images(argv) -> int:
    from harness.data.images import FetchOptions, fetch_images

    defaults = FetchOptions()
    parser = argparse.ArgumentParser(prog="python -m harness.data images",
                                     description="fetch every item's image URL into a local cache")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--out", required=True)
    _common(parser)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--timeout", type=float, default=defaults.timeout)
    parser.add_argument("--deadline", type=float, default=defaults.deadline)
    parser.add_argument("--retries", type=int, default=defaults.retries)
    parser.add_argument("--max-bytes", type=int, default=defaults.max_bytes)
    args = parser.parse_args(argv)
    data = load_dataset(args.dataset, _options(args), data_dir=args.data_dir, verbose=False)
    pairs = list(zip(data.items["raw_id"].iloc[1:].astype(str), data.items["image"].iloc[1:].astype(str)))
    options = FetchOptions(workers=args.workers, timeout=args.timeout, deadline=args.deadline, retries=args.retries,
                           max_bytes=args.max_bytes)
    summary = fetch_images(pairs, args.out, options)
    print(json.dumps({k: v for k, v in summary.items() if k != "options"}))
    print(f"extract with: --image-dir {summary['image_dir']}", file=sys.stderr)
    return 0


def export(argv) -> int:
    from harness.data.export import FORMATS, export_recbole

    parser = argparse.ArgumentParser(prog="python -m harness.data export",
                                     description="write the processed data set as RecBole atomic files")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--format", default="recbole", choices=FORMATS)
    parser.add_argument("--name", default=None, help="file stem (default: the data set's name)")
    _common(parser)
    args = parser.parse_args(argv)
    data = load_dataset(args.dataset, _options(args), data_dir=args.data_dir, verbose=False)
    for path in export_recbole(data, args.out, args.name):
        print(path)
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "stats"
    try:
        return {"stats": stats, "images": images, "export": export}[command](argv)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
