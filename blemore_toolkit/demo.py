"""``blemore demo``: the README's main job, the whole pipeline end to end.

1. synthesise a BLEMORE download (or take the user's real one with ``--real RAW``);
2. prepare it into a Hub-native dataset folder and load it back with ``datasets.load_dataset``;
3. train the tiny video + audio model with the Trainer on CPU (``--fold``: train on the other folds, validate on
   this one, tune the decoder's thresholds on it);
4. predict the test split: a challenge submission (json + the upload zip) checked like ``blemore validate``;
5. score it: against the answer key of the synthetic test actors, who were never seen in training. Real test
   labels are not public, so with ``--real`` the held-out figures are the validation fold's.

Its last stdout line is one JSON object with ``acc_presence``, ``acc_salience`` and ``score`` (held-out actors), the
validation figures and the seconds each stage took. A tiny model trained from scratch reaching high accuracy here
is the check that labels, loss, decoding and scoring are wired right: swapped saliences or a shifted label would
show up as low salience or presence accuracy.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from blemore_toolkit.data.prepare import prepare_dataset


class _Stages:
    """Seconds per stage, printed as they finish (stderr) and kept for the summary."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, name: str, function, *args, **kwargs):
        import sys

        start = time.perf_counter()
        result = function(*args, **kwargs)
        self.seconds[f"{name}_s"] = round(time.perf_counter() - start, 1)
        print(f"demo: {name} done in {self.seconds[f'{name}_s']} s", file=sys.stderr, flush=True)
        return result


def run_demo(args: argparse.Namespace) -> int:
    import datasets

    from blemore_toolkit.data.loading import load_split
    from blemore_toolkit.data.synth import answer_key_path, synthesize
    from blemore_toolkit.evaluation.scoring import score_submission
    from blemore_toolkit.training.predict import predict_split, write_predictions
    from blemore_toolkit.training.train import TrainSettings, run_training

    workdir = Path(args.workdir)
    stages = _Stages()
    if args.real:
        raw = Path(args.real)
    else:
        raw = workdir / "raw"
        stages.run("synth", synthesize, raw, seed=args.seed, overwrite=True)
    out = workdir / "blemore"
    prepared = stages.run("prepare", prepare_dataset, raw, out, overwrite=True)
    for note in prepared.notes:
        print(f"note: {note}")
    splits = {name: len(split) for name, split in datasets.load_dataset(str(out)).items()}

    settings = TrainSettings(output_dir=str(workdir / "train"), epochs=args.epochs, num_workers=args.num_workers,
                             seed=args.seed)
    trained = stages.run("train", run_training, str(out), str(args.fold), settings)
    model_dir = trained["model_dir"]
    validation = {key: value["mean"] for key, value in trained["validation"]["summary"].items()}

    def predict():
        from blemore_toolkit.training.predict import load_model

        model, processor = load_model(model_dir)
        result = predict_split(model, processor, load_split(str(out), "default", "test"),
                               num_workers=args.num_workers)
        return write_predictions(result, workdir / "predict")

    written = stages.run("predict", predict)
    summary: dict = {"dataset": str(out), "splits": splits, "model": model_dir,
                     "submission": str(written["submission"])}
    if args.real:
        summary.update(validation)
        summary["held_out"] = f"validation fold {args.fold} (the real test labels are not public)"
    else:
        scores, _ = stages.run("score", score_submission, written["submission"], answer_key_path(raw))
        summary.update({key: scores[key] for key in ("acc_presence", "acc_salience", "score", "n_clips", "n_blends")})
        summary["held_out"] = "synthetic test actors (never seen in training)"
    summary["validation"] = validation
    report = _write_report(stages, args, raw, out, workdir, model_dir, written["probabilities"])
    if report is not None:
        summary["report"] = str(report)
        print(f"error-analysis report of the held-out predictions: {report}")
    summary.update(stages.seconds)
    print(json.dumps(summary))
    return 0


def _write_report(stages: _Stages, args, raw: Path, out: Path, workdir: Path, model_dir, probabilities: Path):
    """The error-analysis report (``blemore report``) of the held-out predictions, decoded with the model's stored
    thresholds: the synthetic test actors, or with ``--real`` the validation fold. None (with a note) when
    matplotlib is missing."""
    import sys

    from blemore import BlemoreError
    from blemore_toolkit.data.references import load_references
    from blemore_toolkit.data.synth import answer_key_path
    from blemore_toolkit.evaluation.predictions import load_predictions
    from blemore_toolkit.evaluation.report import report_data, write_report

    def report():
        if args.real:
            truth = load_references(out, f"fold{args.fold}")
            source = workdir / "train" / f"fold{args.fold}" / "validation_probabilities.csv"
        else:
            truth, source = load_references(answer_key_path(raw)), probabilities
        aligned = load_predictions(source, truth, model=model_dir)
        return write_report(report_data(aligned, seed=args.seed), workdir / "report")["report.html"]

    try:
        return stages.run("report", report)
    except BlemoreError as error:
        print(f"demo: no report: {error}", file=sys.stderr)
        return None
