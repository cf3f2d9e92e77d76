"""How long the bootstrap takes: 2,000 resamples of the 3,050 BLEMORE clips (target: about a second on one core).

    python benchmarks/bench_statistics.py [--resamples 2000] [--repeat 5]

The clips are the 3,050 real names of the shipped manifest (58 actors); per-clip correctness is drawn at random
(60 % presence right, 40 % of the blends' salience right). Four measurements, each repeated ``--repeat`` times and
reported as median and range beside the target: the clip bootstrap (3,050 clusters, the costliest case), the actor
bootstrap (58 clusters), and the paired comparison (bootstrap + sign flips) with either. Run it with one thread
(``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1``) for the one-core figure; the script sets these itself before numpy
is imported.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import statistics as stats  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import blemore  # noqa: E402
from blemore_toolkit.evaluation import statistics  # noqa: E402

TARGET_S = 1.0


def timed(repeat: int, function, *args, **kwargs) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    clips = list(blemore.load_manifest())
    actors = statistics.actors_of(clips)
    is_blend = np.array([blemore.parse_clip_name(c).is_blend for c in clips])
    rng = np.random.default_rng(0)
    a = statistics.ClipCorrectness(rng.random(len(clips)) < 0.6, is_blend & (rng.random(len(clips)) < 0.4), is_blend)
    b = statistics.ClipCorrectness(rng.random(len(clips)) < 0.6, is_blend & (rng.random(len(clips)) < 0.4), is_blend)
    print(f"{len(clips):,} clips, {len(set(actors))} actors, {args.resamples:,} resamples, "
          f"{os.environ['OMP_NUM_THREADS']} thread(s), median [min–max] of {args.repeat} runs")
    runs = (
        ("clip bootstrap (3,050 clusters)", statistics.bootstrap_interval, (a, None)),
        ("actor bootstrap (58 clusters)", statistics.bootstrap_interval, (a, actors)),
        ("paired comparison, clips", statistics.paired_comparison, (a, b, None)),
        ("paired comparison, actors", statistics.paired_comparison, (a, b, actors)),
    )
    for name, function, positional in runs:
        times = timed(args.repeat, function, *positional, resamples=args.resamples, seed=0)
        median = stats.median(times)
        verdict = "within" if median <= TARGET_S else "OVER"
        print(f"{name:<34} {median:7.3f} s  [{min(times):.3f}–{max(times):.3f}]   target {TARGET_S:.1f} s: {verdict}")


if __name__ == "__main__":
    main()
