"""How long scoring takes: the challenge arithmetic and `blemore score` on 100,000 clips (target: under a second).

    python benchmarks/bench_scoring.py [--clips 100000] [--repeat 3]

Prints one line per stage. Clips and predictions are random draws from the 36 outcomes (a quarter of the
predictions with float saliences such as 69.6/30.4), so about 7% are right, as for a weak model.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import blemore
from blemore_toolkit.data import references
from blemore_toolkit.evaluation import scoring, submission
from metrics.blemore import challenge


def best_of(repeat: int, function, *args):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = function(*args)
        times.append(time.perf_counter() - start)
    return min(times), result


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, repeat = args.clips, args.repeat

    truth, predictions = make_clips(n)
    reference_pairs = [list(zip(o.emotions, o.salience)) for o in truth.values()]
    prediction_entries = list(predictions.values())
    seconds, result = best_of(repeat, challenge.challenge_scores, reference_pairs, prediction_entries)
    print(f"challenge_scores        {n:>8,} clips  {seconds:7.3f} s   (acc_presence {result['acc_presence']:.3f}, "
          f"acc_salience {result['acc_salience']:.3f})")
    seconds, _ = best_of(repeat, challenge.challenge_details, reference_pairs, prediction_entries)
    print(f"challenge_details       {n:>8,} clips  {seconds:7.3f} s")

    with tempfile.TemporaryDirectory() as tmp:
        key, path = write_files(Path(tmp), truth, predictions)
        seconds, truth_set = best_of(repeat, references.load_references, key)
        print(f"read answer key (CSV)   {n:>8,} clips  {seconds:7.3f} s")
        seconds, raw = best_of(repeat, submission.read_submission, path)
        print(f"read submission (JSON)  {n:>8,} clips  {seconds:7.3f} s")
        pairs = {k: c.pairs for k, c in truth_set.items()}
        seconds, _ = best_of(repeat, lambda: submission.check_submission(raw, references=pairs))
        print(f"strict checks           {n:>8,} clips  {seconds:7.3f} s")
        seconds, (scored, _) = best_of(repeat, scoring.score_submission, path, key)
        assert scored["n_clips"] == n and scored["acc_presence"] == result["acc_presence"]
        print(f"score_submission total  {n:>8,} clips  {seconds:7.3f} s   (read + check + score, in process)")
        script = Path(sys.executable).parent / "blemore"
        start = time.perf_counter()
        run = subprocess.run([str(script), "score", str(path), "--references", str(key)], capture_output=True,
                             text=True, check=True)
        seconds = time.perf_counter() - start
        assert json.loads(run.stdout)["n_clips"] == n
        print(f"`blemore score` command {n:>8,} clips  {seconds:7.3f} s   (one run, interpreter start-up included)")


if __name__ == "__main__":
    main()
