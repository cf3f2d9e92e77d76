"""How long scoring takes: `score_submission` on 100,000 clips (target: under a second) and the `blemore score`
command on a 594-clip submission against a plain-Python scorer of the same semantics (target: at most 3x).

    python benchmarks/bench_scoring.py [--clips 100000] [--pairs 5] [--command-clips 594]

Clips and predictions are random draws from the 36 outcomes (a quarter of the predictions with float saliences
such as 69.6/30.4), so about 7% are right, as for a weak model. Every comparison is paired (A B A B ...) and
printed as the median and range of the ratios, beside CPU seconds of this process (``time.process_time``), which
another user's load on a shared machine disturbs far less than wall-clock seconds. The stages (answer key, JSON,
checks) are timed as ``score_submission`` runs them, with the cyclic garbage collector paused.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import blemore
from blemore_toolkit.data import references
from blemore_toolkit.evaluation import scoring, submission
from blemore_toolkit.metrics.blemore import challenge

REPO_ROOT = Path(__file__).resolve().parents[1]

#: The baseline: read the answer key and the JSON with the standard library, compare sets and rounded saliences.
#: No checks and no messages, so it is the floor that any scorer of these semantics pays.
PLAIN_SCORER = r'''
import csv, json, sys
def plain_score(submission_path, key_path):
    truth = {}
    with open(key_path, newline="") as f:
        for row in csv.DictReader(f):
            pairs = [(row["emotion_1"], 100)] if not row["emotion_2"] else [
                (row["emotion_1"], int(row["emotion_1_salience"])), (row["emotion_2"], int(row["emotion_2_salience"]))]
            truth[row["filename"]] = pairs
    with open(submission_path) as f:
        predictions = json.load(f)["predictions"]
    presence = salience = blends = 0
    for clip, guess in predictions.items():
        true = truth[clip.removesuffix(".mov")]
        right = {e for e, _ in true} == {g["emotion"] for g in guess}
        presence += right
        if len(true) == 2:
            blends += 1
            salience += right and len(guess) == 2 and dict(true) == {g["emotion"]: round(g["salience"]) for g in guess}
    return {"acc_presence": presence / len(predictions), "acc_salience": salience / blends if blends else None}
if __name__ == "__main__":
    print(json.dumps(plain_score(sys.argv[1], sys.argv[2])))
'''
_namespace: dict = {}
exec(compile(PLAIN_SCORER, "plain_scorer", "exec"), _namespace)
plain_score = _namespace["plain_score"]


def make_clips(n: int, seed: int = 0) -> tuple[dict, dict]:
    rng = random.Random(seed)
    truth, predictions = {}, {}
    for i in range(1, n + 1):
        clip = f"test_{i:06d}"
        truth[clip] = rng.choice(blemore.OUTCOMES)
        guess = rng.choice(blemore.OUTCOMES)
        entries = guess.as_prediction()
        if guess.is_blend and rng.random() < 0.25:
            entries[0]["salience"] += 0.4 if entries[0]["salience"] < 50 else -0.4
            entries[1]["salience"] = 100.0 - entries[0]["salience"]
        predictions[clip] = entries
    return truth, predictions


def write_files(folder: Path, truth: dict, predictions: dict) -> tuple[Path, Path]:
    key = folder / "answer_key.csv"
    with open(key, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "emotion_1", "emotion_2", "emotion_1_salience", "emotion_2_salience"])
        for clip, outcome in truth.items():
            second = outcome.emotions[1] if outcome.is_blend else ""
            saliences = outcome.salience if outcome.is_blend else ("", "")
            writer.writerow([clip, outcome.emotions[0], second, *saliences])
    path = folder / "submission.json"
    path.write_text(json.dumps({"predictions": {f"{c}.mov": p for c, p in predictions.items()}}))
    return key, path


def timed(function, *args):
    """``(wall seconds, CPU seconds of this process, result)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return time.perf_counter() - wall, time.process_time() - cpu, result


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f} (range {min(values):.3f}-{max(values):.3f})"


def run_command(argv: list[str], cache: Path) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of a fresh process.

    Byte-code caching is on (in ``cache``, via PYTHONPYCACHEPREFIX) as in an installed package, even where the
    environment sets PYTHONDONTWRITEBYTECODE: compiling the toolkit's sources again on every run costs ~0.1 s.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
           "PYTHONPYCACHEPREFIX": str(cache)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, capture_output=True, text=True, check=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


#: What the installed ``blemore`` console script runs.
CONSOLE_SCRIPT = [sys.executable, "-c", "import sys; from blemore_toolkit.cli import main; sys.exit(main())"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=5, help="paired runs of each comparison (default 5)")
    parser.add_argument("--command-clips", type=int, default=594, help="clips of the command comparison (594)")
    args = parser.parse_args()
    n = args.clips

    truth, predictions = make_clips(n)
    reference_pairs = [list(zip(o.emotions, o.salience)) for o in truth.values()]
    prediction_entries = list(predictions.values())
    wall, cpu, result = timed(challenge.challenge_scores, reference_pairs, prediction_entries)
    print(f"challenge_scores        {n:>8,} clips  {wall:6.3f} s wall  {cpu:6.3f} s CPU  (acc_presence "
          f"{result['acc_presence']:.3f}, acc_salience {result['acc_salience']:.3f})")
    wall, cpu, _ = timed(challenge.challenge_details, reference_pairs, prediction_entries)
    print(f"challenge_details       {n:>8,} clips  {wall:6.3f} s wall  {cpu:6.3f} s CPU")

    with tempfile.TemporaryDirectory() as tmp:
        key, path = write_files(Path(tmp), truth, predictions)
        # The stages of score_submission, as it runs them: with the cyclic garbage collector paused.
        with scoring._collector_paused():
            wall, cpu, truth_set = timed(references.load_references, key)
            print(f"read answer key (CSV)   {n:>8,} clips  {wall:6.3f} s wall  {cpu:6.3f} s CPU  (collector paused)")
            wall, cpu, raw = timed(submission.read_submission, path)
            print(f"read submission (JSON)  {n:>8,} clips  {wall:6.3f} s wall  {cpu:6.3f} s CPU  (collector paused)")
            pairs = {k: c.pairs for k, c in truth_set.items()}
            wall, cpu, _ = timed(functools.partial(submission.check_submission, raw, references=pairs))
            print(f"strict checks           {n:>8,} clips  {wall:6.3f} s wall  {cpu:6.3f} s CPU  (collector paused)")
        del truth_set, raw, pairs

        ours_cpu, ours_wall, ratios = [], [], []
        for _ in range(args.pairs):
            wall, cpu, (scored, _) = timed(scoring.score_submission, path, key)
            plain_wall, plain_cpu, plain = timed(plain_score, path, key)
            assert scored["n_clips"] == n and scored["acc_presence"] == result["acc_presence"] \
                == plain["acc_presence"]
            ours_cpu.append(cpu)
            ours_wall.append(wall)
            ratios.append(cpu / plain_cpu)
        print(f"score_submission total  {n:>8,} clips  CPU s {spread(ours_cpu)}, wall s {spread(ours_wall)}   "
              f"target < 1 s (read + check + score, in process)")
        print(f"  vs a plain reader + scorer, paired over {args.pairs} runs: CPU ratio {spread(ratios)}x")

        cache = Path(tmp) / "pycache"
        command = [*CONSOLE_SCRIPT, "score", str(path), "--references", str(key)]
        run_command(command, cache)  # warm-up: writes the byte-code cache
        seconds, cpu = run_command(command, cache)
        print(f"`blemore score` command {n:>8,} clips  {seconds:6.3f} s wall  {cpu:6.3f} s CPU (one run, start-up "
              f"included)   target < 2 s")

        m = args.command_clips
        small_truth, small_predictions = make_clips(m, seed=1)
        small = Path(tmp) / "small"
        small.mkdir()
        small_key, small_path = write_files(small, small_truth, small_predictions)
        plain_script = small / "plain_scorer.py"
        plain_script.write_text(PLAIN_SCORER)
        ours = [*CONSOLE_SCRIPT, "score", str(small_path), "--references", str(small_key)]
        plain_command = [sys.executable, str(plain_script), str(small_path), str(small_key)]
        run_command(plain_command, cache)
        walls_ours, walls_plain, cpu_ratios = [], [], []
        for _ in range(args.pairs):
            wall_ours, cpu_ours = run_command(ours, cache)
            wall_plain, cpu_plain = run_command(plain_command, cache)
            walls_ours.append(wall_ours)
            walls_plain.append(wall_plain)
            cpu_ratios.append(cpu_ours / max(cpu_plain, 1e-3))
        wall_ratios = [a / b for a, b in zip(walls_ours, walls_plain)]
        print(f"`blemore score` command {m:>8,} clips  wall s {spread(walls_ours)}; plain-Python scorer command "
              f"wall s {spread(walls_plain)}")
        print(f"  cold-process ratio, paired over {args.pairs} runs: wall {spread(wall_ratios)}x, CPU "
              f"{spread(cpu_ratios)}x   target <= 3x")

if __name__ == "__main__":
    main()
