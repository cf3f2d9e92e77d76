"""CV time of the heads on BLEMORE-sized features, ``--protocol paper`` against ``--protocol toolkit`` (paired runs).

    python benchmarks/bench_heads.py [--clips 2456] [--width 14336] [--head mlp512] [--pairs 2] [--threads 2]
                                     [--paper-epochs 200] [--toolkit-epochs 20] [--protocols paper toolkit]

14,336 = 7 statistics × 2,048 (e.g. a 1,024-wide video encoder early-fused with a 1,024-wide audio encoder). The
features and labels are random (random outcomes, five folds of equal size), so only the time means anything; the
scores printed are chance level. Runs are paired (paper, toolkit, paper, toolkit, ...) so that load on a shared
machine hits both alike; the ratio paper/toolkit is given per pair, with its median and range. The paper protocol's
200 epochs (every one evaluated on the validation fold) take long on two cores: ``--paper-epochs`` cuts them, and
the script then prints the time per epoch and the whole protocol's time projected from it (epochs × time per
epoch; the test fit is not part of the CV time). The load average before and after each run is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import blemore
from blemore_toolkit.features.cross_validation import cross_validate, format_table
from blemore_toolkit.features.feature_table import FeatureTable
from blemore_toolkit.features.head_training import HeadSettings, _use_bfloat16
from blemore_toolkit.features.protocols import HEAD_PROTOCOLS


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
    parser.add_argument("--protocols", nargs="+", default=["paper", "toolkit"], choices=sorted(HEAD_PROTOCOLS))
    parser.add_argument("--pairs", type=int, default=2, help="paired rounds (each runs every protocol once)")
    parser.add_argument("--paper-epochs", type=int, default=None, help="cut the paper protocol's 200 epochs")
    parser.add_argument("--toolkit-epochs", type=int, default=None, help="override the toolkit protocol's 20")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    table = random_table(args.clips, args.width)
    epochs = {"paper": args.paper_epochs, "toolkit": args.toolkit_epochs}
    timings: dict[str, list[float]] = {name: [] for name in args.protocols}
    for round_ in range(args.pairs):
        for name in args.protocols:
            settings = HeadSettings(head=args.head, protocol=name, epochs=epochs[name])
            load_before = os.getloadavg()[0]
            start = time.perf_counter()
            cv = cross_validate(table, settings)
            seconds = time.perf_counter() - start
            timings[name].append(seconds)
            training = settings.training
            if round_ == 0:
                print(format_table(cv, f"{args.head}, protocol {name}, {args.clips} clips × {args.width} random "
                                       f"features, {training.epochs} epochs"))
            print(f"round {round_ + 1} {name:<8} {seconds:8.1f} s  ({seconds / (5 * training.epochs):.3f} s per "
                  f"fold-epoch; load average {load_before:.2f} → {os.getloadavg()[0]:.2f})", flush=True)
    print(f"\ntorch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, bfloat16 matmuls (toolkit auto) "
          f"{_use_bfloat16('auto')}")
    per_epoch = {}
    for name, values in timings.items():
        protocol = HeadSettings(protocol=name, epochs=epochs[name]).training
        full = HEAD_PROTOCOLS[name].epochs
        per_epoch[name] = [v / (5 * protocol.epochs) for v in values]
        projected = statistics.median(per_epoch[name]) * 5 * full
        note = "" if protocol.epochs == full else f"; projected for its {full} epochs: {projected:.0f} s"
        print(f"{name:<8} 5-fold CV, {protocol.epochs} epochs: median {statistics.median(values):.1f} s "
              f"(range {min(values):.1f}–{max(values):.1f}){note}")
    if len(timings) == 2 and all(timings.values()):
        a, b = args.protocols
        ratios = [x / y for x, y in zip(per_epoch[a], per_epoch[b])]
        print(f"per epoch, {a}/{b}: median {statistics.median(ratios):.2f}× (range {min(ratios):.2f}–"
              f"{max(ratios):.2f}, {len(ratios)} pairs)")


if __name__ == "__main__":
    main()
