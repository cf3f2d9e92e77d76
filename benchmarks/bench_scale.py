"""How the evaluation commands scale with the number of clips: seconds and peak memory per command and row count.

    python benchmarks/bench_scale.py [--rows 10000 100000 1000000] [--commands score compare compare-csv ensemble]
                                     [--actors 0] [--keep DIR]

For each row count N it writes, in a temporary folder, what a user with N clips has: an answer key CSV (the form
``blemore synth`` writes; anonymised names ``test_0000001``, with an ``actor_id`` column of ``--actors`` actors, or
none: then every interval resamples clips, the most work), two challenge submissions and two ``probabilities.csv``
of random predictions, and for the ensemble a dataset folder (``data/train.parquet``: clip, split, fold, outcome)
and two ``blemore heads``-style run folders (``oof_probabilities.csv``, ``test_probabilities.csv`` of N/4 test
clips). It then runs each command once as its own process and prints its wall-clock seconds, CPU seconds and peak
resident memory (``ru_maxrss`` of that process, from ``os.wait4``):

* ``score``: ``blemore score SUB --references KEY`` (a submission of more than about 700,000 clips is over the
  64 MiB ``score`` reads by default: ``BLEMORE_MAX_SUBMISSION_BYTES`` is raised to fit, see
  ``--max-submission-bytes``);
* ``compare``: ``blemore compare SUB_A SUB_B --references KEY`` (paired bootstrap and sign-flip test, 2,000 each);
* ``compare-csv``: the same on the two probabilities.csv (``--thresholds-a/-b 0.15 0.2``);
* ``ensemble``: ``blemore ensemble RUN_A RUN_B --dataset DATASET --output OUT``.

The predictions are random, so the figures are about the work, not the accuracy. Run it on an idle machine; on a
shared one say what else ran (the load average before each command is printed).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("score", "compare", "compare-csv", "ensemble")
EMOTIONS = ("ang", "disg", "fea", "hap", "sad", "neu")


def _outcomes():
    import blemore

    return blemore.OUTCOMES


def write_answer_key(path: Path, names: list[str], outcomes: np.ndarray, actors: int) -> None:
    table = _outcomes()
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "emotion_1", "emotion_2", "emotion_1_salience", "emotion_2_salience"]
                        + (["actor_id"] if actors else []))
        for i, (name, index) in enumerate(zip(names, outcomes)):
            outcome = table[index]
            row = [name, outcome.emotions[0], outcome.emotions[1] if outcome.is_blend else "",
                   outcome.salience[0] if outcome.is_blend else "", outcome.salience[1] if outcome.is_blend else ""]
            writer.writerow(row + ([f"B{i % actors:05d}"] if actors else []))


def write_submission(path: Path, names: list[str], outcomes: np.ndarray) -> None:
    table = _outcomes()
    with open(path, "w") as f:
        json.dump({"predictions": {f"{name}.mov": table[index].as_prediction()
                                   for name, index in zip(names, outcomes)}}, f)


def write_probabilities(path: Path, names: list[str], probabilities: np.ndarray, truth: np.ndarray | None) -> None:
    import blemore

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["clip_id", *(f"p_{e}" for e in EMOTIONS)] + (["outcome"] if truth is not None else []))
        for i, name in enumerate(names):
            row = [name, *(f"{v:.6f}" for v in probabilities[i])]
            if truth is not None:
                row.append(blemore.OUTCOME_NAMES[truth[i]])
            writer.writerow(row)


def random_probabilities(rng: np.random.Generator, n: int) -> np.ndarray:
    p = rng.dirichlet(np.full(6, 0.5), size=n)
    p = np.round(p, 6)
    p[:, -1] = np.round(1.0 - p[:, :-1].sum(axis=1), 6)  # rows sum to 1 within the printed precision
    bad = p[:, -1] < 0
    p[bad] = 1.0 / 6
    return p


def make_inputs(folder: Path, n: int, actors: int, seed: int = 0, ensemble: bool = True) -> dict[str, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    names = [f"test_{i:07d}" for i in range(1, n + 1)]
    truth = rng.integers(0, 36, n)
    paths = {"key": folder / "answer_key.csv", "sub_a": folder / "a.json", "sub_b": folder / "b.json",
             "csv_a": folder / "a.csv", "csv_b": folder / "b.csv", "dataset": folder / "dataset",
             "run_a": folder / "run_a", "run_b": folder / "run_b", "out": folder / "ensemble"}
    write_answer_key(paths["key"], names, truth, actors)
    write_submission(paths["sub_a"], names, rng.integers(0, 36, n))
    write_submission(paths["sub_b"], names, rng.integers(0, 36, n))
    write_probabilities(paths["csv_a"], names, random_probabilities(rng, n), None)
    write_probabilities(paths["csv_b"], names, random_probabilities(rng, n), None)
    if not ensemble:
        return paths
    # the ensemble: n labelled training clips in five folds, n // 4 test clips
    train = [f"A{i % 997:03d}_clip{i:07d}" for i in range(n)]
    test = [f"test_{i:07d}" for i in range(n // 4)]
    (paths["dataset"] / "data").mkdir(parents=True)
    folds = rng.integers(0, 5, n)
    table = pa.table({"clip_id": train + test, "split": ["train"] * n + ["test"] * len(test),
                      "fold": pa.array(list(folds) + [None] * len(test), pa.int64()),
                      "outcome": pa.array(list(truth) + [None] * len(test), pa.int64())})
    pq.write_table(table, paths["dataset"] / "data" / "train.parquet")
    for run in ("run_a", "run_b"):
        paths[run].mkdir()
        write_probabilities(paths[run] / "oof_probabilities.csv", train, random_probabilities(rng, n), truth)
        write_probabilities(paths[run] / "test_probabilities.csv", test, random_probabilities(rng, len(test)), None)
    return paths


def command_line(command: str, paths: dict[str, Path]) -> list[str]:
    blemore = [sys.executable, "-m", "blemore"]
    if command == "score":
        return blemore + ["score", str(paths["sub_a"]), "--references", str(paths["key"])]
    if command == "compare":
        return blemore + ["compare", str(paths["sub_a"]), str(paths["sub_b"]), "--references", str(paths["key"])]
    if command == "compare-csv":
        return blemore + ["compare", str(paths["csv_a"]), str(paths["csv_b"]), "--references", str(paths["key"]),
                          "--thresholds-a", "0.15", "0.2", "--thresholds-b", "0.15", "0.2"]
    if command == "ensemble":
        return blemore + ["ensemble", str(paths["run_a"]), str(paths["run_b"]), "--dataset", str(paths["dataset"]),
                          "--output", str(paths["out"])]
    raise ValueError(command)


def measure(argv: list[str], extra_env: dict[str, str] | None = None) -> dict:
    """Run one command; its wall-clock and CPU seconds, peak RSS (MB) and exit status."""
    start = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), **(extra_env or {})}
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024,
            "status": os.waitstatus_to_exitcode(status), "error": stderr.decode(errors="replace").strip()[-300:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--commands", nargs="+", choices=COMMANDS, default=list(COMMANDS))
    parser.add_argument("--actors", type=int, default=0, help="actors in the answer key (0: no actor column)")
    parser.add_argument("--keep", type=Path, help="write the inputs here and keep them")
    parser.add_argument("--max-submission-bytes", type=int, default=None,
                        help="passed as BLEMORE_MAX_SUBMISSION_BYTES (default: raised to fit the largest submission "
                             "written, so a 1M-clip submission is scored)")
    args = parser.parse_args()
    print(f"{'rows':>9} {'command':<12} {'seconds':>8} {'cpu s':>8} {'peak MB':>8}  load before")
    for n in args.rows:
        with tempfile.TemporaryDirectory(prefix="blemore-scale-") as scratch:
            folder = args.keep / str(n) if args.keep else Path(scratch)
            folder.mkdir(parents=True, exist_ok=True)
            paths = make_inputs(folder, n, args.actors, ensemble="ensemble" in args.commands)
            cap = args.max_submission_bytes or max(64 << 20, 2 * paths["sub_a"].stat().st_size)
            for command in args.commands:
                load = os.getloadavg()[0]
                result = measure(command_line(command, paths), {"BLEMORE_MAX_SUBMISSION_BYTES": str(cap)})
                status = "" if result["status"] == 0 else f"  exit {result['status']}: {result['error']}"
                print(f"{n:>9} {command:<12} {result['seconds']:>8.1f} {result['cpu_seconds']:>8.1f} "
                      f"{result['peak_mb']:>8.0f}  {load:.1f}{status}", flush=True)


if __name__ == "__main__":
    main()
