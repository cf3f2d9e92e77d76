"""How long a 5-fold CV of the paper's MLP-512 head takes on BLEMORE-sized features (target: under 60 s, 2 cores).

    python benchmarks/bench_heads.py [--clips 2456] [--width 14336] [--head mlp512] [--epochs 20] [--threads 2]

14,336 = 7 statistics × 2,048 (e.g. a 1,024-wide video encoder early-fused with a 1,024-wide audio encoder). The
features and labels are random (random outcomes, five folds of equal size), so only the time means anything; the
scores printed are chance level. The machine's load average is printed before and after, because other work on a
shared machine slows the run down.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import blemore
from blemore_toolkit.features.heads import FeatureTable, HeadSettings, _use_bfloat16, cross_validate, format_table


def random_table(clips: int, width: int, seed: int = 0) -> FeatureTable:
    rng = np.random.default_rng(seed)
    outcome = rng.integers(0, len(blemore.OUTCOMES), clips)
    targets = np.array([blemore.soft_target(o.emotions, o.salience) for o in blemore.OUTCOMES], dtype=np.float32)
    return FeatureTable(
        clip_ids=[f"clip_{i:05d}" for i in range(clips)], split=np.array(["train"] * clips),
        fold=np.arange(clips) % blemore.NUM_FOLDS, outcome=outcome, soft_target=targets[outcome],
        features={"random": rng.standard_normal((clips, width), dtype=np.float32)},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=2456)
    parser.add_argument("--width", type=int, default=14336)
    parser.add_argument("--head", default="mlp512")
    parser.add_argument("--epochs", type=int, default=HeadSettings.epochs)
    parser.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"))
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    table = random_table(args.clips, args.width)
    settings = HeadSettings(head=args.head, epochs=args.epochs, precision=args.precision)
    load_before = os.getloadavg()
    start = time.perf_counter()
    cv = cross_validate(table, settings)
    seconds = time.perf_counter() - start
    load_after = os.getloadavg()
    print(format_table(cv, f"{args.head}, {args.clips} clips × {args.width} random features, {args.epochs} epochs"))
    print(f"5-fold CV of {args.head}: {seconds:.1f} s (target < 60 s on 2 cores); torch threads "
          f"{torch.get_num_threads()}, bfloat16 matmuls {_use_bfloat16(args.precision)}, cpus {os.cpu_count()}, "
          f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")


if __name__ == "__main__":
    main()
