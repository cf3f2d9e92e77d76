"""The ``blemore`` command line: it parses each command's arguments and calls the library that does the work.

Each command has an ``add_<command>_arguments(parser)`` and a ``run_<command>(args)`` here; the library module a
command needs is imported only when that command runs, so ``blemore --help`` and the scoring commands start fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from blemore import NUM_FOLDS, BlemoreError

#: Command → one-line help, in the order the data flows.
COMMANDS: dict[str, str] = {
    "synth": "write a synthetic BLEMORE download (clips, metadata, test answer key)",
    "prepare": "turn a download into a Hub-native dataset folder that load_dataset reads",
    "push": "push a prepared dataset folder to the Hub",
    "score": "score a challenge submission against references",
    "compare": "paired comparison of two submissions on the same clips: difference, interval, p-value",
    "report": "error-analysis report: confusion matrices, per-emotion figures, α/β and calibration plots (HTML)",
    "validate": "check a submission against the test clips before upload",
    "zip": "write the challenge upload zip from a predictions JSON",
    "baseline": "the paper's trivial most-frequent baselines per fold and test",
    "train": "fine-tune a video + audio model with the Trainer, one fold or all five",
    "predict": "write a challenge submission (json + zip) and probabilities from a model",
    "convert": "convert a research checkpoint (VideoMAEv2, ImageBind, HiCMAE) into a transformers folder",
    "features": "extract encoder features into a dataset config beside the clips",
    "heads": "train the paper's heads on feature configs: 5-fold CV, α/β tuning, test fit",
    "ensemble": "late fusion of heads/train runs: weights on out-of-fold probabilities, nested CV, submission",
    "demo": "synthesise → prepare → train → predict → score, end to end",
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {help_}" for name, help_ in COMMANDS.items()]
        print("usage: blemore COMMAND [options]   (blemore COMMAND --help for a command's options)\n\ncommands:")
        print("\n".join(lines))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nblemore: error: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    parser = argparse.ArgumentParser(prog=f"blemore {command}", description=COMMANDS[command])
    globals()[f"add_{command}_arguments"](parser)
    args = parser.parse_args(rest)
    try:
        return int(globals()[f"run_{command}"](args) or 0)
    except BlemoreError as error:
        print(f"blemore {command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"blemore {command}: interrupted", file=sys.stderr)
        return 130


# ---------------------------------------------------------------------------------------------------------------
# data: synthetic downloads, prepare, push
# ---------------------------------------------------------------------------------------------------------------


def add_synth_arguments(parser: argparse.ArgumentParser) -> None:
    from blemore_toolkit.data.synth import DEFAULT_DURATIONS, DEFAULT_WORKERS
    from blemore_toolkit.data.synth_audio import DEFAULT_AUDIO_RATE

    parser.add_argument("raw", metavar="RAW", type=Path, help="folder to write the synthetic download to")
    parser.add_argument("--actors-per-fold", type=int, default=2, metavar="N",
                        help="made-up train actors in each of the 5 folds (default 2; ignored with --full)")
    parser.add_argument("--test-actors", type=int, default=2, metavar="N",
                        help="made-up test actors (default 2; ignored with --full)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    parser.add_argument("--width", type=int, help="clip width in pixels (default 128, or 64 with --full)")
    parser.add_argument("--height", type=int, help="clip height in pixels (default 96, or 48 with --full)")
    parser.add_argument("--full", action="store_true",
                        help="the 3,050 clip names, splits and folds of the real dataset (scale tests)")
    parser.add_argument("--durations", type=float, nargs=2, default=list(DEFAULT_DURATIONS), metavar=("MIN", "MAX"),
                        help="range of clip durations in seconds (default 1 8; e.g. 1 2 for a quick --full set)")
    parser.add_argument("--audio-rate", type=int, default=DEFAULT_AUDIO_RATE, metavar="HZ",
                        help=f"sample rate of the clips' AAC audio (default {DEFAULT_AUDIO_RATE})")
    parser.add_argument("--answer-key", type=Path, metavar="PATH",
                        help="where to write the test answer key (default RAW_test_answer_key.csv beside RAW)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, metavar="N",
                        help=f"ffmpeg processes at a time (default {DEFAULT_WORKERS}; any number, same bytes)")
    parser.add_argument("--overwrite", action="store_true", help="replace a previous synthetic download in RAW")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_synth(args: argparse.Namespace) -> int:
    from blemore_toolkit.data.synth import synthesize

    if (args.width is None) != (args.height is None):
        raise BlemoreError("give both --width and --height, or neither")
    summary = synthesize(
        args.raw, actors_per_fold=args.actors_per_fold, test_actors=args.test_actors, seed=args.seed,
        width=args.width, height=args.height, full=args.full, answer_key=args.answer_key, num_workers=args.workers,
        durations=tuple(args.durations), audio_rate=args.audio_rate, overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(f"wrote {summary.train_clips} train clips ({len(summary.train_actors)} actors in {NUM_FOLDS} "
          f"folds) and {summary.test_clips} test clips ({len(summary.test_actors)} actors) to {summary.raw_dir} "
          f"in {summary.seconds:.1f} s; test answer key: {summary.answer_key}")
    return 0


def add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    from blemore_toolkit.data.prepare import DEFAULT_CLIPS_PER_SHARD

    parser.add_argument("raw", help="the download folder (clips at any depth, metadata CSVs optional)")
    parser.add_argument("out", nargs="?", default="blemore",
                        help="output folder (default: ./blemore, which loads as load_dataset('blemore'))")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--clips-per-shard", type=int, default=DEFAULT_CLIPS_PER_SHARD)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT if prepare wrote it (its features configs are kept when the clips are "
                             "unchanged)")
    parser.add_argument("--drop-features", action="store_true",
                        help="with --overwrite: delete OUT's features configs even when the clips changed")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--video-size", type=int, default=None, metavar="PIXELS",
                        help="store a training copy of each video with its short side at PIXELS (e.g. 256; aspect "
                             "kept, H.264 CRF 18): decoding it costs a fraction of 720p/1080p")
    parser.add_argument("--keep-original-video", action="store_true",
                        help="with --video-size: keep the original videos too, in an original_video column "
                             "(default: dropped; either way the card says so)")


def run_prepare(args: argparse.Namespace) -> int:
    from blemore_toolkit.data.prepare import prepare_dataset

    result = prepare_dataset(args.raw, args.out, num_workers=args.workers, clips_per_shard=args.clips_per_shard,
                             overwrite=args.overwrite, progress=not args.quiet, video_size=args.video_size,
                             keep_original_video=args.keep_original_video, drop_features=args.drop_features)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"prepared {result.num_clips} clips into {result.out_dir} ({result.shards_written} shards written, "
          f"{result.shards_reused} reused); load it with datasets.load_dataset({str(result.out_dir)!r})")
    return 0


def add_push_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset_dir", metavar="DATASET_DIR", help="a folder written by `blemore prepare`")
    parser.add_argument("repo", metavar="REPO", help="dataset repo id, e.g. your-name/blemore")
    parser.add_argument("--private", action="store_true", help="create the repo as private (if it does not exist)")
    parser.add_argument("--revision", metavar="BRANCH", default=None,
                        help="branch to commit to (created from main if missing; default: main)")
    parser.add_argument("--endpoint", metavar="URL", default=None,
                        help="Hub endpoint (default: $HF_ENDPOINT or https://huggingface.co)")
    parser.add_argument("--message", default=None, help="commit message")


def run_push(args: argparse.Namespace) -> int:
    from blemore_toolkit.data.hub import push_dataset

    info = push_dataset(args.dataset_dir, args.repo, private=args.private, revision=args.revision,
                        commit_message=args.message, endpoint=args.endpoint)
    print(f"pushed {args.dataset_dir} to {info.repo_url} at commit {info.oid}")
    print(f'load it with: datasets.load_dataset("{info.repo_url.repo_id}", revision="{info.oid}")')
    return 0


# ---------------------------------------------------------------------------------------------------------------
# evaluation: score, validate, zip, baseline
# ---------------------------------------------------------------------------------------------------------------


def add_score_arguments(parser: argparse.ArgumentParser) -> None:
    from blemore_toolkit.evaluation.scoring import _SCORE_EPILOG

    parser.epilog = _SCORE_EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("submission", help="challenge submission, .json or the upload .zip")
    parser.add_argument("--references", "-r", required=True, metavar="REF",
                        help="prepared dataset folder or CSV with the true labels")
    parser.add_argument("--split", default=None,
                        help="train, test or fold0..fold4 (validation clips of that fold); default: every clip of "
                             "a CSV, the test split of a folder")
    parser.add_argument("--details", action="store_true",
                        help="add per-emotion and per-blend accuracy and the presence and salience confusions")
    parser.add_argument("--lenient", action="store_true",
                        help="score sloppy input exactly as the challenge's scorer would, listing what it tolerated")
    add_interval_arguments(parser, flag=True)


def run_score(args: argparse.Namespace) -> int:
    from blemore_toolkit.evaluation.scoring import dumps, score_submission, tolerated_lines, warning_lines

    interval = {"resamples": args.resamples, "seed": args.seed} if args.ci else None
    result, checked = score_submission(args.submission, args.references, args.split, args.lenient, args.details,
                                       interval)
    for line in tolerated_lines(checked):
        print(f"blemore score: lenient: {line}", file=sys.stderr)
    if args.ci and result["ci_method"] == "actor bootstrap" and result["n_clusters"] < 5:
        print(f"blemore score: note: only {result['n_clusters']} actors: an interval from so few is rough",
              file=sys.stderr)
    if args.ci and result["ci_method"] != "actor bootstrap":
        print("blemore score: note: no actor for every clip (anonymised names and no actor_id column in the "
              "references): the intervals resample clips, which treats an actor's clips as independent and is "
              "too narrow", file=sys.stderr)
    for line in warning_lines(checked):
        print(f"blemore score: warning: {line}", file=sys.stderr)
    print(dumps(result))
    return 0


def add_interval_arguments(parser: argparse.ArgumentParser, flag: bool = False) -> None:
    """--ci (when it is optional), --resamples and --seed of the actor bootstrap."""
    group = parser.add_argument_group("intervals (a bootstrap over actors, or clips when actors are unknown)")
    if flag:
        group.add_argument("--ci", action="store_true",
                           help="add 95%% intervals of acc_presence, acc_salience and score (\"ci\", \"ci_level\", "
                                "\"ci_method\"); the actor of a clip comes from its name or an actor_id column in REF")
    group.add_argument("--resamples", type=int, default=2000, metavar="N", help="bootstrap resamples (default 2000)")
    group.add_argument("--seed", type=int, default=0, help="same seed, same interval (default 0)")


def add_validate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("submission", help="challenge submission, .json or the upload .zip")
    parser.add_argument("--against", metavar="TEST_DIR_OR_LIST", default=None,
                        help="the test clips: a folder of videos (or a download with a test/ folder), a prepared "
                             "dataset folder, the submission template .json, a CSV with a filename column, or a "
                             "text file with one clip per line; without it only the format is checked")


def run_validate(args: argparse.Namespace) -> int:
    from blemore_toolkit.evaluation.scoring import validate_submission, warning_lines

    checked = validate_submission(args.submission, args.against)
    for line in warning_lines(checked):
        print(f"blemore validate: warning: {line}", file=sys.stderr)
    coverage = f", exactly the {len(checked.predictions)} clips of {args.against}" if args.against else \
        " (format only: give --against to check the clip list)"
    never = f"; {len(checked.warnings)} can never be scored right (see the warnings)" if checked.warnings else ""
    print(f"{checked.source}: valid, {len(checked.predictions)} clips{coverage}{never}")
    return 0


def add_zip_arguments(parser: argparse.ArgumentParser) -> None:
    from blemore_toolkit.evaluation.submission import SUBMISSION_MEMBER

    parser.add_argument("predictions", help="predictions in the challenge's JSON format (or a .zip holding it)")
    parser.add_argument("--output", "-o", default=None,
                        help="the zip to write (default: PREDICTIONS with the .zip suffix)")
    parser.add_argument("--against", metavar="TEST_DIR_OR_LIST", default=None,
                        help="check the clip list too (see `blemore validate --help`)")
    parser.add_argument("--member", default=SUBMISSION_MEMBER,
                        help="name of the JSON file inside the zip (default: %(default)s)")


def run_zip(args: argparse.Namespace) -> int:
    from blemore_toolkit.evaluation import submission
    from blemore_toolkit.evaluation.scoring import validate_submission, warning_lines

    checked = validate_submission(args.predictions, args.against)
    for line in warning_lines(checked):
        print(f"blemore zip: warning: {line}", file=sys.stderr)
    output = Path(args.output) if args.output else Path(args.predictions).with_suffix(".zip")
    if output.resolve() == Path(args.predictions).resolve():
        raise BlemoreError(f"{output}: would overwrite the predictions; give --output")
    submission.write_submission(checked.predictions, output, member=args.member)
    print(f"{output}: {len(checked.predictions)} clips in {args.member}, ready to upload")
    return 0


def add_baseline_arguments(parser: argparse.ArgumentParser) -> None:
    from blemore_toolkit.evaluation.baselines import COUNT_ON

    parser.add_argument("--references", "-r", required=True, metavar="REF",
                        help="prepared dataset folder or CSV with labels, splits and folds (e.g. the shipped "
                             "manifest, the organisers' train_metadata.csv)")
    parser.add_argument("--count-on", choices=COUNT_ON, default="partition",
                        help="where the most frequent outcome is counted: the evaluated partition itself (the "
                             "paper's convention, default) or the training partition")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run_baseline(args: argparse.Namespace) -> int:
    from blemore_toolkit.data import references
    from blemore_toolkit.evaluation.baselines import baseline_table, format_table

    table = baseline_table(references.read_references(args.references), args.count_on)
    print(json.dumps(table, indent=2) if args.json else format_table(table, args.count_on))
    return 0


# ---------------------------------------------------------------------------------------------------------------
# uncertainty and error analysis: compare, report
# ---------------------------------------------------------------------------------------------------------------


def _add_predictions_source_arguments(parser: argparse.ArgumentParser, suffixes: Sequence[str] = ("",)) -> None:
    group = parser.add_argument_group("probabilities.csv (decoded with the α/β threshold rule)")
    for suffix in suffixes:
        which = f" for {suffix.strip('-').upper()}" if suffix else ""
        group.add_argument(f"--thresholds{suffix}", type=float, nargs=2, metavar=("ALPHA", "BETA"),
                           help=f"presence and salience thresholds{which}")
        group.add_argument(f"--model{suffix}", metavar="MODEL_DIR",
                           help=f"a saved model whose config.json stores the thresholds{which}")


def _add_references_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--references", "-r", required=True, metavar="REF",
                        help="prepared dataset folder or CSV with the true labels (an actor_id column gives the "
                             "actors of anonymised test names)")
    parser.add_argument("--split", default=None,
                        help="train, test or fold0..fold4; default: every clip of a CSV, the test split of a folder")
    parser.add_argument("--lenient", action="store_true", help="accept sloppy submissions as the challenge does")


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", metavar="A", help="submission (.json/.zip) or probabilities.csv")
    parser.add_argument("b", metavar="B", help="the other one, on the same clips")
    _add_references_arguments(parser)
    _add_predictions_source_arguments(parser, ("-a", "-b"))
    add_interval_arguments(parser)
    parser.epilog = ("Prints one JSON object: \"difference\" (A − B), its paired actor-bootstrap \"ci\" and a "
                     "two-sided \"p_value\" from a paired sign-flip permutation of whole actors, each keyed by "
                     "acc_presence, acc_salience and score.")


def run_compare(args: argparse.Namespace) -> int:
    from blemore_toolkit.data.references import load_references
    from blemore_toolkit.evaluation.predictions import align_pair, load_predictions
    from blemore_toolkit.evaluation.scoring import dumps
    from blemore_toolkit.evaluation.statistics import paired_comparison

    truth = load_references(args.references, args.split)
    a = load_predictions(args.a, truth, thresholds=args.thresholds_a, model=args.model_a, lenient=args.lenient)
    b = load_predictions(args.b, truth, thresholds=args.thresholds_b, model=args.model_b, lenient=args.lenient)
    align_pair(a, b)
    result = paired_comparison(a.correctness(), b.correctness(), a.actors, resamples=args.resamples, seed=args.seed)
    if result["ci_method"] != "paired actor bootstrap":
        print("blemore compare: note: no actor for every clip: clips are resampled and flipped one by one, which "
              "treats an actor's clips as independent", file=sys.stderr)
    result["a"], result["b"] = {"file": args.a, **result["a"]}, {"file": args.b, **result["b"]}
    print(dumps(result))
    return 0


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("predictions", metavar="PREDICTIONS", help="submission (.json/.zip) or probabilities.csv")
    _add_references_arguments(parser)
    parser.add_argument("--output-dir", "-o", default="report", metavar="DIR",
                        help="where the figures and report.html go (default: ./report)")
    _add_predictions_source_arguments(parser)
    features = parser.add_argument_group("PCA per blend pair (the paper's Figure 5)")
    features.add_argument("--features", nargs="+", metavar="NAME", help="features config(s) of --dataset")
    features.add_argument("--dataset", metavar="DIR", help="the prepared dataset folder holding the features")
    add_interval_arguments(parser)


def run_report(args: argparse.Namespace) -> int:
    from blemore_toolkit.data.references import load_references
    from blemore_toolkit.evaluation.predictions import load_predictions
    from blemore_toolkit.evaluation.report import report_data, write_report

    if bool(args.features) != bool(args.dataset):
        raise BlemoreError("--features and --dataset go together")
    truth = load_references(args.references, args.split)
    aligned = load_predictions(args.predictions, truth, thresholds=args.thresholds, model=args.model,
                               lenient=args.lenient)
    features = None
    if args.features:
        import numpy as np

        from blemore_toolkit.evaluation.statistics import actor_of
        from blemore_toolkit.features.feature_table import load_feature_table

        table = load_feature_table(args.dataset, sorted(args.features))
        rows = np.flatnonzero(table.outcome >= 0)
        features = {"name": " + ".join(sorted(args.features)), "matrix": table.matrix()[rows],
                    "actors": [actor_of(table.clip_ids[i]) or "unknown" for i in rows],
                    "outcomes": table.outcome[rows]}
    written = write_report(report_data(aligned, resamples=args.resamples, seed=args.seed, features=features),
                           args.output_dir)
    for name, path in written.items():
        if name != "report.html":
            print(f"wrote {path}")
    print(f"report: {written['report.html']}")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# training: train, predict
# ---------------------------------------------------------------------------------------------------------------


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    from blemore_toolkit.training.train import FOLDS

    parser.add_argument("dataset", metavar="DATASET", help="a folder written by `blemore prepare`")
    parser.add_argument("--fold", default="all", choices=[*map(str, FOLDS), "all", "none"],
                        help="validate on this fold (train on the others); 'all': the five folds, their mean ± std "
                             "and a final fit on all train clips; 'none': only the final fit (default: all)")
    parser.add_argument("--output-dir", "-o", default="runs/train",
                        help="where runs are written (default: runs/train)")
    model = parser.add_argument_group("model (default: the tiny random demo model)")
    model.add_argument("--video-backbone", metavar="NAME_OR_PATH", help="pretrained video encoder, e.g. a VideoMAE")
    model.add_argument("--audio-backbone", metavar="NAME_OR_PATH", help="pretrained audio encoder, e.g. a WavLM")
    model.add_argument("--model", default="blemore", choices=("blemore", "hicmae"),
                       help="blemore: video + audio encoders composed by the toolkit (default); hicmae: HiCMAE's own "
                            "audio-visual architecture (--init-from a folder of `blemore convert hicmae`)")
    model.add_argument("--recipe", choices=("paper",),
                       help="paper: the published fine-tuning recipe of --model hicmae (epochs, batch, AdamW, layer "
                            "decay, warm-up, augmentation; see docs/recipes.md); it sets --epochs, --batch-size, "
                            "--lr, --weight-decay, --warmup-ratio and --seed")
    model.add_argument("--faces", metavar="DIR",
                       help="--model hicmae: frames from OpenFace aligned faces (the paper's input), one folder per "
                            "clip in DIR named CLIP_ID or CLIP_ID_aligned; without it whole frames are resized")
    model.add_argument("--init-from", metavar="MODEL", help="continue from a saved BLEMORE model")
    model.add_argument("--trust-remote-code", action="store_true",
                       help="allow an --init-from model that ships its own modelling code (read it first); BLEMORE "
                            "models load without it")
    model.add_argument("--num-frames", type=int, help="frames per clip (default: the video encoder's, tiny: 4)")
    model.add_argument("--image-size", type=int, default=32, help="frame size of the tiny model (default: 32)")
    model.add_argument("--max-audio-seconds", type=float, default=2.0,
                       help="cut audio after this many seconds (default: 2; 0 keeps whole clips)")
    model.add_argument("--fusion", choices=["concat", "gated", "cross_attention"])
    model.add_argument("--objective", choices=["soft_kl", "outcome"])
    model.add_argument("--decoding-rule", "--decoder", dest="decoding_rule", choices=["thresholds", "expected_score"],
                       help="how probabilities become predictions (config.decoding_rule; default: thresholds)")
    model.add_argument("--freeze-video-encoder", action="store_true")
    model.add_argument("--freeze-audio-encoder", action="store_true")
    model.add_argument("--freeze-audio-feature-encoder", action="store_true")
    loop = parser.add_argument_group("training")
    loop.add_argument("--epochs", type=float, default=12)
    loop.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (overrides --epochs)")
    loop.add_argument("--batch-size", type=int, default=8, help="per device (default: 8)")
    loop.add_argument("--eval-batch-size", type=int)
    loop.add_argument("--learning-rate", "--lr", type=float,
                      help="default: 3e-3 for the tiny model, 5e-5 with pretrained encoders")
    loop.add_argument("--weight-decay", type=float, default=0.01)
    loop.add_argument("--warmup-ratio", type=float, default=0.1)
    loop.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes (default: 2)")
    loop.add_argument("--seed", type=int, default=0)
    loop.add_argument("--bf16", action="store_true", help="bfloat16 mixed precision (GPUs)")
    loop.add_argument("--gradient-checkpointing", action="store_true")
    loop.add_argument("--resume", action="store_true", help="continue from the last checkpoint; skip finished folds")
    loop.add_argument("--protocol", default="toolkit", choices=("toolkit", "paper"),
                      help="paper: the organisers' 20×20 α/β grid (ties: lowest α, β) and the best fold's α/β for "
                      "the final fit; toolkit: 0–0.5 grid, pooled out-of-fold α/β (default)")
    loop.add_argument("--presence-threshold", type=float, help="α for a final fit without validation folds")
    loop.add_argument("--salience-threshold", type=float, help="β for a final fit without validation folds")
    hub = parser.add_argument_group("Hub")
    hub.add_argument("--push-to-hub", metavar="REPO", help="push the final (or fold) model with a model card")
    hub.add_argument("--hub-endpoint", metavar="URL", help="Hub endpoint (default: $HF_ENDPOINT or the public Hub)")
    hub.add_argument("--private", action="store_true")
    hub.add_argument("--dataset-repo", metavar="REPO", help="the dataset's Hub repo, linked from the model card")
    hub.add_argument("--metric-repo", metavar="REPO",
                     help="the published blemore metric's Hub repo, the model card's metric type (default: accuracy)")


def settings_from_args(args: argparse.Namespace):
    from blemore_toolkit.training.train import TrainSettings

    model_settings = {key: getattr(args, key) for key in ("fusion", "objective", "decoding_rule")
                      if getattr(args, key)}
    for key in ("freeze_video_encoder", "freeze_audio_encoder", "freeze_audio_feature_encoder"):
        if getattr(args, key):
            model_settings[key] = True
    return TrainSettings(
        output_dir=args.output_dir, video_backbone=args.video_backbone, audio_backbone=args.audio_backbone,
        init_from=args.init_from, trust_remote_code=args.trust_remote_code, num_frames=args.num_frames,
        image_size=args.image_size,
        max_audio_seconds=args.max_audio_seconds or None, model_settings=model_settings, epochs=args.epochs,
        batch_size=args.batch_size, eval_batch_size=args.eval_batch_size, learning_rate=args.learning_rate,
        weight_decay=args.weight_decay, warmup_ratio=args.warmup_ratio, num_workers=args.num_workers, seed=args.seed,
        bf16=args.bf16, gradient_checkpointing=args.gradient_checkpointing, resume=args.resume,
        max_steps=args.max_steps, protocol=args.protocol, model=args.model, recipe=args.recipe,
        faces_dir=args.faces,
    )  # fmt: skip


def run_train(args: argparse.Namespace) -> int:
    from blemore_toolkit.training.train import _is_main_process, run_training

    if args.init_from and (args.video_backbone or args.audio_backbone):
        raise BlemoreError("give either --init-from or backbones, not both")
    if args.dataset_repo:  # checked before training: it goes into the model card
        from blemore_toolkit.data.hub import check_repo_id

        check_repo_id(args.dataset_repo, "--dataset-repo")
    if args.model == "hicmae" and (args.video_backbone or args.audio_backbone):
        raise BlemoreError("--model hicmae has its own encoders: give --init-from a converted HiCMAE, not backbones")
    if args.model != "hicmae" and args.init_from and (Path(args.init_from) / "config.json").is_file():
        try:
            init_type = json.loads((Path(args.init_from) / "config.json").read_text()).get("model_type")
        except (OSError, ValueError):
            init_type = None  # the loader names what is wrong with it
        if init_type == "hicmae":
            raise BlemoreError(f"{args.init_from}: a HiCMAE model; train it with --model hicmae")
    if args.faces and args.model != "hicmae":
        raise BlemoreError("--faces (aligned face folders) is for --model hicmae")
    if args.faces and not Path(args.faces).is_dir():
        raise BlemoreError(f"--faces {args.faces}: no such folder")
    if args.recipe == "paper" and args.model != "hicmae":
        raise BlemoreError("--recipe paper is the published fine-tuning of --model hicmae; the composed models' "
                           "paper settings are `--protocol paper`")
    settings = settings_from_args(args)
    if args.recipe == "paper":
        from blemore_toolkit.training.hicmae import apply_paper_recipe

        settings = apply_paper_recipe(settings)
    thresholds = {key: getattr(args, key) for key in ("presence_threshold", "salience_threshold")
                  if getattr(args, key) is not None}
    summary = run_training(args.dataset, args.fold, settings, thresholds)
    if args.push_to_hub and _is_main_process():
        from blemore_toolkit.training.model_card import push_model_with_card

        info = push_model_with_card(summary, args.push_to_hub, endpoint=args.hub_endpoint, private=args.private,
                                    dataset_repo=args.dataset_repo, metric_repo=args.metric_repo)
        summary["pushed"] = {"repo": args.push_to_hub, "revision": info.oid}
    if _is_main_process():
        from blemore_toolkit.evaluation.scoring import json_text

        print(json_text({key: summary[key] for key in summary if key != "validation"} |
                        ({"validation": summary["validation"]["summary"]} if "validation" in summary else {}),
                        indent=None), end="")
    return 0


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a saved model folder (…/model) or a Hub repo id")
    parser.add_argument("dataset", metavar="DATASET", help="a folder written by `blemore prepare`")
    parser.add_argument("--config", default="default", help="dataset config (default: default; e.g. fold2)")
    parser.add_argument("--split", default="test", help="split to predict (default: test)")
    parser.add_argument("--output-dir", "-o", default="runs/predict", help="where to write (default: runs/predict)")
    parser.add_argument("--revision", help="model revision on the Hub (a commit hash pins it)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow a model that ships its own modelling code (read it first); BLEMORE models load "
                             "without it")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes (default: 2)")
    parser.add_argument("--faces", metavar="DIR",
                        help="a HiCMAE model: frames from OpenFace aligned faces, one folder per clip in DIR "
                             "(CLIP_ID or CLIP_ID_aligned), as in training")


def run_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from blemore_toolkit.data.loading import cache_copy, load_split
    from blemore_toolkit.training.predict import load_model, predict_features, predict_split, write_predictions

    model, processor = load_model(args.model, args.revision, trust_remote_code=args.trust_remote_code)
    faces = getattr(args, "faces", None)
    if faces and model.config.model_type != "hicmae":
        raise BlemoreError("--faces (aligned face folders) is for HiCMAE models")
    if faces and not Path(faces).is_dir():
        raise BlemoreError(f"--faces {faces}: no such folder")
    if processor is None:  # a head on features: read the features configs beside the clips
        result, truth = predict_features(model, args.dataset, args.config, args.split)
    else:
        split = load_split(args.dataset, args.config, args.split, only_this_split=True)
        copy = cache_copy(split)
        if copy:
            print(f"blemore predict: note: datasets keeps a copy of the {args.split} split ({copy[1] / 1e6:.1f} MB) "
                  f"in its cache, {copy[0]} (HF_DATASETS_CACHE); remove it when done", file=sys.stderr)
        result = predict_split(model, processor, split, batch_size=args.batch_size, num_workers=args.num_workers,
                               **({"faces_dir": faces} if faces else {}))
        outcomes = list(split["outcome"]) if "outcome" in split.column_names else []
        truth = np.asarray(outcomes) if outcomes and None not in outcomes else None
    paths = write_predictions(result, args.output_dir, truth)
    summary = {"clips": len(result["clip_ids"]), **{name: str(path) for name, path in paths.items()}}
    if truth is not None:
        from blemore_toolkit.evaluation.tuning import outcome_scores

        summary.update({key: value for key, value in outcome_scores(truth, result["outcomes"]).items()})
    from blemore_toolkit.evaluation.scoring import json_text

    print(json_text(summary, indent=None), end="")  # an undefined accuracy as null, never NaN
    return 0


# ---------------------------------------------------------------------------------------------------------------
# conversion: research checkpoints -> transformers folders
# ---------------------------------------------------------------------------------------------------------------


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    from blemore_toolkit.conversion import FAMILIES, family_module

    families = parser.add_subparsers(dest="family", metavar="FAMILY", required=True,
                                     help="; ".join(f"{name}: {help_}" for name, help_ in FAMILIES.items()))
    for name, help_ in FAMILIES.items():
        try:
            module = family_module(name)
        except BlemoreError:
            continue
        sub = families.add_parser(name, help=help_, description=help_)
        sub.add_argument("checkpoint", metavar="CHECKPOINT", type=Path, help="the original checkpoint file (.pth)")
        sub.add_argument("out", metavar="OUT", type=Path, help="folder to write (must not exist yet)")
        module.add_arguments(sub)


def run_convert(args: argparse.Namespace) -> int:
    from blemore_toolkit.conversion import convert_checkpoint

    options = {key: value for key, value in vars(args).items() if key not in ("family", "checkpoint", "out")}
    out = convert_checkpoint(args.family, args.checkpoint, args.out, **options)
    print(f"converted {args.checkpoint} into {out}; load it with from_pretrained({str(out)!r})")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# features: features, heads
# ---------------------------------------------------------------------------------------------------------------


def add_features_arguments(parser: argparse.ArgumentParser) -> None:
    from blemore_toolkit.features.configs import ENCODER_KINDS
    from blemore_toolkit.features.protocols import PROTOCOLS

    parser.add_argument("dataset", help="a prepared dataset folder (written by `blemore prepare`)")
    parser.add_argument("--encoder", default=None,
                        help="transformers encoder (Hub name or local folder), egemaps (openSMILE eGeMAPSv02), or "
                        "torchvision:NAME (a torchvision video model: swin3d_t/s/b, mvit_v1_b, mvit_v2_s, "
                        "r2plus1d_18, r3d_18, mc3_18, s3d)")
    parser.add_argument("--weights", default=None, metavar="PATH",
                        help="torchvision:NAME: a state-dict file to load (default: random initialisation; nothing "
                        "is ever downloaded)")
    parser.add_argument("--openface-dir", default=None, metavar="DIR",
                        help="import OpenFace 2.x FeatureExtraction CSVs (one per clip, named after it) instead of "
                        "running an encoder; the config is named openface unless --name says otherwise")
    parser.add_argument("--name", default=None, help="features config name (default: from the encoder and layers)")
    parser.add_argument("--kind", default="auto", choices=("auto",) + ENCODER_KINDS,
                        help="image (frame level), video (clip level, windows) or audio; auto reads the config")
    parser.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit) of the encoder")
    parser.add_argument("--layers", default="last",
                        help="hidden states to average: last (default: the model's own embedding), all, 6-12, 6,8")
    parser.add_argument("--protocol", default="toolkit", choices=PROTOCOLS,
                        help="frame sampling and windows: paper (every frame; 16 consecutive frames a window, the "
                        "last one zero-padded) or toolkit (4 frames/s, at most 64; every 4th frame, end-aligned "
                        "last window); the options below override it")
    parser.add_argument("--frames-per-second", type=float, default=None,
                        help="image encoders: frames sampled per s (0: every frame; default: the protocol's)")
    parser.add_argument("--max-frames", type=int, default=None,
                        help="image encoders: at most this many frames a clip (0: no cap; default: the protocol's)")
    parser.add_argument("--window", type=int, default=None, help="video encoders: frames a window (default: the "
                        "encoder's num_frames, 16 for VideoMAE)")
    parser.add_argument("--frame-stride", type=int, default=None,
                        help="video encoders: take every k-th frame (default: the protocol's, paper 1, toolkit 4)")
    parser.add_argument("--last-window", default=None, choices=("end_aligned", "zero_pad"),
                        help="video encoders: the clip's tail as an end-aligned window or one padded with black "
                        "frames (default: the protocol's)")
    parser.add_argument("--audio-window-s", type=float, default=0.5, help="audio: seconds per stored sequence step")
    parser.add_argument("--max-audio-s", type=float, default=None, help="audio: cut longer tracks")
    parser.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda, cuda:1, mps")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--batch-size", type=int, default=32, help="frames, windows or tracks per forward pass")
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: up to 4)")
    parser.add_argument("--local-files-only", action="store_true", help="never contact the Hub for the encoder")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow encoders that ship their own modelling code on the Hub (read it first)")
    parser.add_argument("--overwrite", action="store_true", help="replace a config with the same name")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_features(args: argparse.Namespace) -> int:
    from blemore_toolkit.features.extraction import STATISTICS, extract_features

    result = extract_features(
        args.dataset, args.encoder, config_name=args.name, kind=args.kind, revision=args.revision, layers=args.layers,
        protocol=args.protocol, frames_per_second=args.frames_per_second, max_frames=args.max_frames,
        window=args.window, frame_stride=args.frame_stride, last_window=args.last_window,
        audio_window_s=args.audio_window_s, max_audio_s=args.max_audio_s,
        device=args.device, dtype=args.dtype, batch_size=args.batch_size, workers=args.workers,
        local_files_only=args.local_files_only, trust_remote_code=args.trust_remote_code, weights=args.weights,
        openface_dir=args.openface_dir, overwrite=args.overwrite, progress=not args.quiet,
    )
    if not result.is_main_process:  # the other processes of a multi-process run say nothing
        return 0
    vector = (f"{len(STATISTICS)}×{result.hidden_size} statistics" if result.features_size is None
              else f"{result.features_size} features")
    print(f"features {result.config!r}: {result.num_clips} clips × {vector} in {result.out_dir} "
          f"({result.shards_written} shards written, {result.shards_reused} reused); "
          f"load it with datasets.load_dataset({str(args.dataset)!r}, {result.config!r})")
    return 0


def add_heads_arguments(parser: argparse.ArgumentParser) -> None:
    from blemore_toolkit.features.head_training import HEADS
    from blemore_toolkit.features.protocols import METHODS, PROTOCOLS, describe_head_protocols

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("protocols (--protocol; an explicit --epochs/--lr/... overrides the protocol's value):\n"
                     + describe_head_protocols() + "\n\npaper: the organisers' protocol point by point, for figures "
                     "comparable with the paper's Tables 2 and 3.\ntoolkit: ~10× fewer epochs, no model selection on "
                     "the validation fold, one α/β search on all\nout-of-fold probabilities (see docs/recipes.md, "
                     "'How the toolkit's protocol differs and why').")
    parser.add_argument("configs", nargs="+", metavar="FEATURE_CONFIG",
                        help="features configs of DATASET (several: early fusion by concatenation)")
    parser.add_argument("--dataset", required=True, help="the prepared dataset folder holding the features")
    parser.add_argument("--head", default="mlp512", choices=HEADS)
    parser.add_argument("--protocol", default="toolkit", choices=PROTOCOLS,
                        help="paper: the organisers' training, selection and α/β search; toolkit: faster, see below")
    parser.add_argument("--method", default="aggregation", choices=METHODS,
                        help="aggregation: the seven statistics per clip; subsampling: every window of a clip "
                        "encoder its own example, logits averaged over a clip's windows")
    parser.add_argument("--late-fusion", action="store_true",
                        help="one head per config, probabilities averaged (instead of concatenating features)")
    parser.add_argument("--hidden", type=int, default=256,
                        help="fusion and sequence heads: projection and hidden width")
    parser.add_argument("--epochs", type=int, default=None, help="override the protocol's epochs")
    parser.add_argument("--batch-size", type=int, default=None, help="override the protocol's batch size")
    parser.add_argument("--lr", type=float, default=None, help="override the protocol's learning rate")
    parser.add_argument("--weight-decay", type=float, default=None, help="override the protocol's weight decay")
    parser.add_argument("--dropout", type=float, default=None, help="override the protocol's dropout")
    parser.add_argument("--precision", default=None, choices=("auto", "float32", "bfloat16"),
                        help="matmul precision while training (auto: bfloat16 where the CPU does it natively; "
                        "default: the protocol's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--output", default=None, help="model folder (default: heads-<head>-<configs>); the CV "
                        "results go to OUTPUT/cv/")
    parser.add_argument("--cv-only", action="store_true", help="CV table and OUTPUT/cv/ only, no test fit")
    parser.add_argument("--submission", default=None, help="also write test predictions here (.json or .zip)")
    parser.add_argument("--push-to-hub", default=None, metavar="REPO", help="push the saved model folder")
    parser.add_argument("--endpoint", default=None, help="Hub endpoint for --push-to-hub (default: HF_ENDPOINT)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_heads(args: argparse.Namespace) -> int:
    from blemore_toolkit.features.head_training import HeadSettings
    from blemore_toolkit.features.heads import run_heads_pipeline
    from blemore_toolkit.features.sequence_heads import head_recipe

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    settings = HeadSettings(head=args.head, hidden=args.hidden, protocol=args.protocol, method=args.method,
                            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                            weight_decay=args.weight_decay, dropout=args.dropout, precision=args.precision,
                            seed=args.seed)
    report = run_heads_pipeline(args.dataset, args.configs, settings, output=args.output,
                                late_fusion=args.late_fusion, submission=args.submission,
                                push_to_hub=args.push_to_hub, hub_endpoint=args.endpoint,
                                cv_only=args.cv_only, progress=not args.quiet, recipe=head_recipe(args.head))
    print(f"cross-validation results in {report['cv_dir']}")
    for folder in report.get("model_folders", []):
        print(f"saved {folder} (AutoModelForVideoClassification.from_pretrained({folder!r}, trust_remote_code=True))")
    if "submission" in report:
        print(f"wrote {report['submission']}")
    if "pushed" in report:
        print(f"pushed to {report['pushed']['repo']} at {report['pushed']['commit']}")
    return 0


def add_ensemble_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="`blemore heads` output folders and/or `blemore train --fold all` run folders")
    parser.add_argument("--dataset", required=True, help="the prepared dataset the runs were made on (folds, labels)")
    parser.add_argument("--output", default=None, help="folder for ensemble.json and the fused test probabilities")
    parser.add_argument("--submission", default=None, help="also write fused test predictions here (.json or .zip)")


def run_ensemble(args: argparse.Namespace) -> int:
    from blemore_toolkit.features.ensemble import run_ensemble as fuse_runs

    report = fuse_runs(args.runs, args.dataset, output=args.output, submission=args.submission)
    if "submission" in report:
        print(f"wrote {report['submission']}")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------------------------------


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--real", metavar="RAW", help="your BLEMORE download instead of synthetic data")
    parser.add_argument("--workdir", default="runs/demo", help="where the demo writes (default: runs/demo)")
    parser.add_argument("--fold", type=int, default=0, choices=range(5), help="validation fold (default: 0)")
    parser.add_argument("--epochs", type=float, default=8,
                        help="training epochs (default: 8; the tiny model has learnt the synthetic labels by then)")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes (default: 2)")
    parser.add_argument("--seed", type=int, default=0)


def run_demo(args: argparse.Namespace) -> int:
    from blemore_toolkit.demo import run_demo as demo

    return demo(args)


if __name__ == "__main__":
    sys.exit(main())
