"""Process data sets (or read them from the cache) and print their statistics table.

    python -m harness.data ml-100k ml-1m [--user-k 5 --item-k 5] [--out results/datasets.md]
"""
from __future__ import annotations

import argparse
import sys

from harness.data import DataError, PreprocessOptions, load_dataset, stats_table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+")
    parser.add_argument("--user-k", type=int, default=5)
    parser.add_argument("--item-k", type=int, default=5)
    parser.add_argument("--dedup", default="exact", choices=["exact", "pair"])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=None, help="also write the Markdown table here")
    args = parser.parse_args(argv)
    all_stats = []
    try:
        for name in args.datasets:
            data = load_dataset(name, PreprocessOptions(args.user_k, args.item_k, args.dedup), data_dir=args.data_dir,
                                verbose=False)
            all_stats.append(data.stats())
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    table = (f"Statistics after {args.user_k}/{args.item_k}-core filtering (dedup: {args.dedup}).\n\n"
             + stats_table(all_stats) + "\n")
    print(table)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
