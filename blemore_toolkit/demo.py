"""``blemore demo``: the README's main job.

For now it runs the dataset half of the pipeline end to end: synthesise a BLEMORE download (or take the user's real
one with ``--real RAW``), prepare it into a Hub-native folder, load it back with ``datasets.load_dataset``, decode a
clip. Training, prediction and scoring join it as those commands land. Its last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import blemore


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--real", metavar="RAW", help="your BLEMORE download instead of synthetic data")
    parser.add_argument("--workdir", default="runs/demo", help="where the demo writes (default: runs/demo)")
    parser.add_argument("--seed", type=int, default=0)


def run_demo(args: argparse.Namespace) -> int:
    import datasets

    from blemore_toolkit.synth import answer_key_path, synthesize

    workdir = Path(args.workdir)
    timings = {}
    start = time.perf_counter()
    if args.real:
        raw = Path(args.real)
    else:
        raw = workdir / "raw"
        synthesize(raw, seed=args.seed, overwrite=True)
        timings["synth_s"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    out = workdir / "blemore"
    result = blemore.prepare_dataset(raw, out, overwrite=True)
    timings["prepare_s"] = round(time.perf_counter() - start, 1)
    for note in result.notes:
        print(f"note: {note}")

    ds = datasets.load_dataset(str(out))
    row = ds["train"][0]
    frames = row["video"].get_frames_at(indices=[0]).data
    summary = {
        "dataset": str(out),
        "splits": {name: len(split) for name, split in ds.items()},
        "first_clip": row["clip_id"],
        "frame_shape": list(frames.shape),
        "audio_samples": len(row["audio"]["array"]),
        **timings,
    }
    if not args.real:
        summary["answer_key"] = str(answer_key_path(raw))
    print(json.dumps(summary))
    return 0
