"""How long a 5-fold CV of each sequence head takes on BLEMORE-sized sequences on CPU.

    python benchmarks/bench_sequence_heads.py [--clips 2456] [--windows 64] [--width 1024] [--modalities 2]
        [--heads attention_pool,temporal_transformer,cross_modal] [--epochs 20] [--hidden 256] [--threads N]

Default size: 2,456 clips (the train partition) × 64 windows × 1,024 dimensions for each of two modalities (e.g. a
1,024-wide video encoder and a 1,024-wide audio encoder), every window real (no padding to skip), the heads'
default settings (``HeadSettings``: 20 epochs, batch 64, hidden 256). The sequences and labels are random, so only
the time means anything; the printed scores are chance level. Each head's CV (5 folds: training, validation
prediction, α/β tuning) is timed as one run; the time of one epoch (total / (5 × epochs)) is printed too, because
full-size runs are long on small machines and ``--epochs`` is the knob to shorten them. The machine's load average
is printed before and after: other work on a shared machine slows the run down.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import blemore
from blemore_toolkit.features.cross_validation import cross_validate
from blemore_toolkit.features.head_training import SEQUENCE_HEADS, HeadSettings, _use_bfloat16
from blemore_toolkit.features.sequence_heads import SEQUENCE_RECIPE, SequenceTable


def random_sequence_table(clips: int, windows: int, width: int, modalities: int, seed: int = 0) -> SequenceTable:
    rng = np.random.default_rng(seed)
    outcome = rng.integers(0, len(blemore.OUTCOMES), clips)
    targets = np.array([blemore.soft_target(o.emotions, o.salience) for o in blemore.OUTCOMES], dtype=np.float32)
    names = [f"modality{m}" for m in range(modalities)]
    return SequenceTable(
        clip_ids=[f"clip_{i:05d}" for i in range(clips)], split=np.array(["train"] * clips),
        fold=np.arange(clips) % blemore.NUM_FOLDS, outcome=outcome, soft_target=targets[outcome],
        features={name: np.zeros((clips, 1), dtype=np.float32) for name in names},  # statistics: unused here
        sequences={name: rng.standard_normal((clips, windows, width), dtype=np.float32) for name in names},
        num_windows={name: np.full(clips, windows) for name in names},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=2456)
    parser.add_argument("--windows", type=int, default=64)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--modalities", type=int, default=2)
    parser.add_argument("--heads", default=",".join(SEQUENCE_HEADS))
    parser.add_argument("--epochs", type=int, default=HeadSettings.epochs)
    parser.add_argument("--hidden", type=int, default=HeadSettings.hidden)
    parser.add_argument("--batch-size", type=int, default=HeadSettings.batch_size)
    parser.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"))
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    # Warm-up (first-call costs of torch's kernels) on a tiny table, so that the first head timed is not charged.
    for head in args.heads.split(","):
        cross_validate(random_sequence_table(50, 4, 16, args.modalities),
                       HeadSettings(head=head, hidden=32, epochs=1, precision=args.precision), recipe=SEQUENCE_RECIPE)
    table = random_sequence_table(args.clips, args.windows, args.width, args.modalities)
    size = f"{args.clips} clips × {args.windows} windows × {args.width} dims × {args.modalities} modalities"
    for head in args.heads.split(","):
        settings = HeadSettings(head=head, hidden=args.hidden, epochs=args.epochs, batch_size=args.batch_size,
                                precision=args.precision)
        load_before = os.getloadavg()
        start = time.perf_counter()
        cv = cross_validate(table, settings, recipe=SEQUENCE_RECIPE)
        seconds = time.perf_counter() - start
        load_after = os.getloadavg()
        print(f"{head}: 5-fold CV {seconds:.1f} s ({seconds / (5 * args.epochs):.1f} s per fold-epoch), {size}, "
              f"{args.epochs} epochs, hidden {args.hidden}; pooled score {cv.pooled['score']:.3f} (random data: "
              f"chance); torch threads {torch.get_num_threads()}, bfloat16 matmuls {_use_bfloat16(args.precision)}, "
              f"cpus {os.cpu_count()}, load average before {load_before[0]:.2f}, after {load_after[0]:.2f}",
              flush=True)


if __name__ == "__main__":
    main()
