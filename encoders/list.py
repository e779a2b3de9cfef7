"""Print the encoder registry: `python -m encoders.list [--encoders-file F] [--model-dir D]`."""
from __future__ import annotations

import argparse

from encoders.registry import availability, registry


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m encoders.list", description=__doc__)
    parser.add_argument("--encoders-file", default=None)
    parser.add_argument("--model-dir", default=None)
    args = parser.parse_args(argv)
    rows = [("name", "modality", "family", "params", "dim", "pooling", "available here")]
    for spec in registry(args.encoders_file).values():
        params = f"{spec.params / 1e9:.1f}B" if spec.params >= 1e9 else f"{spec.params / 1e6:.1f}M"
        rows.append((spec.name, spec.modality, spec.family, params, str(spec.dim), spec.resolved_pooling,
                     availability(spec, args.model_dir)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


if __name__ == "__main__":
    main()
