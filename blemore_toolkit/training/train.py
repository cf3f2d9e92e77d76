"""``blemore train DATASET``: fine-tune a BLEMORE video + audio model with the transformers Trainer.

What a run does
---------------
* ``--fold k`` trains on the other four folds of the prepared dataset (its ``fold{k}`` config) and validates on fold
  ``k`` after every epoch. The checkpoint with the best challenge score on validation is kept; the α/β thresholds
  of the paper's decoder are then tuned on that fold's predictions and written into the model's config, so the saved
  model predicts exactly as it was validated. Output: ``OUTPUT/fold{k}/model`` (config, safetensors, remote code,
  processor) and ``OUTPUT/fold{k}/results.json``.
* ``--fold all`` does that for the five actor-disjoint folds, prints a mean ± std table, then fits a final model on
  the whole train partition (``OUTPUT/final/model``) for the test predictions. With no validation left for the
  final fit, it trains for the same number of epochs and takes the α/β tuned on the five folds' pooled
  validation predictions (each clip predicted by the model that did not see its actor).
* ``--fold none`` is only the final fit, with the given (or default) thresholds.
* ``--protocol paper`` applies what the organisers' protocol says that concerns end-to-end training: α/β searched
  on their 20 × 20 grid (ties to the lowest α, then β) and the final fit decoded with the α/β of the best fold
  (highest composite score; ties: the lowest fold). The best epoch per fold is chosen by the composite score under
  either protocol. ``--protocol toolkit`` (default): the toolkit's grid and the pooled α/β above. The optimiser
  settings of the paper are for heads on features (``blemore heads``), not for fine-tuning encoders.
* Each fold's ``results.json`` lists the clips it trained on (``training_clips``), so that anyone can check that no
  fold trains on its own validation clips.

Clips are decoded and processed on the fly in DataLoader workers (``blemore_toolkit.training.batches``); the model
is the tiny random demo model unless ``--video-backbone``/``--audio-backbone`` (pretrained encoders, by Hub name or
local path) or ``--init-from`` (a saved BLEMORE model) say otherwise.

The script is the same under ``accelerate launch`` or ``torchrun`` with several processes (the Trainer shards the
batches and gathers predictions; only the main process writes); ``--bf16`` and ``--gradient-checkpointing`` are for
GPUs; ``--resume`` continues a stopped run from its last checkpoint and skips folds already finished.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from blemore import BlemoreError
from blemore_toolkit.data.atomic import write_text_atomically
from blemore_toolkit.data.loading import card_splits, load_split
from blemore_toolkit.evaluation.tuning import PAPER_GRID, TOOLKIT_GRID, ThresholdGrid, tune_thresholds
from blemore_toolkit.metrics.blemore.challenge import METRICS
from blemore_toolkit.training.batches import (
    LABEL_KEY,
    ClipCollator,
    clip_stream,
    cpu_threads_beside_workers,
    labelled_outcomes,
)
from blemore_toolkit.training.predict import emotion_probabilities, outcome_probabilities

FOLDS = tuple(range(5))


# ---------------------------------------------------------------------------------------------------------------
# Settings and model
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class TrainSettings:
    """Everything a run needs besides the data; the CLI fills it, tests and notebooks may build it directly."""

    output_dir: str = "runs/train"
    video_backbone: str | None = None
    audio_backbone: str | None = None
    init_from: str | None = None
    #: Run the code a model of --init-from ships (BLEMORE models load without it: this package's classes are used).
    trust_remote_code: bool = False
    num_frames: int | None = None
    image_size: int = 32
    max_audio_seconds: float | None = 2.0
    model_settings: dict = field(default_factory=dict)
    epochs: float = 12
    batch_size: int = 8
    eval_batch_size: int | None = None
    learning_rate: float | None = None
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    num_workers: int = 2
    seed: int = 0
    bf16: bool = False
    gradient_checkpointing: bool = False
    resume: bool = False
    max_steps: int = -1
    logging_steps: int = 10
    progress: bool = True
    #: ``toolkit`` or ``paper``: the α/β grid and the final fit's α/β rule (see the module docstring).
    protocol: str = "toolkit"
    #: ``blemore`` (video + audio encoders composed by BlemoreConfig) or ``hicmae`` (see ``training.hicmae``).
    model: str = "blemore"
    #: ``paper``: the fine-tuning recipe published for the model (HiCMAE: the BLEMORE fork's), else the toolkit's.
    recipe: str | None = None
    #: HiCMAE: a folder of OpenFace aligned-face folders, one per clip (``CLIP_ID`` or ``CLIP_ID_aligned``).
    faces_dir: str | None = None

    @property
    def threshold_grid(self) -> ThresholdGrid:
        if self.protocol not in ("toolkit", "paper"):
            from blemore import BlemoreError

            raise BlemoreError(f"--protocol {self.protocol!r}: expected toolkit or paper")
        return PAPER_GRID if self.protocol == "paper" else TOOLKIT_GRID

    @property
    def tiny(self) -> bool:
        return not (self.video_backbone or self.audio_backbone or self.init_from)

    @property
    def lr(self) -> float:
        """The learning rate: as given, else 1e-3 for a model trained from scratch and 5e-5 for pretrained encoders."""
        if self.learning_rate is not None:
            return self.learning_rate
        return 3e-3 if self.tiny else 5e-5


def build_model(settings: TrainSettings):
    """A fresh model and its processor, as the settings say (the same weights for every fold: seeded)."""
    import torch

    from blemore_toolkit.modeling import BlemoreForBlendedEmotionRecognition, BlemoreProcessor

    if settings.model == "hicmae":
        from blemore_toolkit.training.hicmae import build_hicmae

        return build_hicmae(settings)
    torch.manual_seed(settings.seed)
    if settings.init_from:
        from blemore_toolkit.training.predict import load_blemore_model, load_blemore_processor

        model = load_blemore_model(settings.init_from, trust_remote_code=settings.trust_remote_code,
                                   **settings.model_settings)
        return model, load_blemore_processor(settings.init_from)
    if settings.tiny:
        from blemore_toolkit.training.tiny import tiny_model, tiny_processor

        num_frames = settings.num_frames or 4
        model = tiny_model(num_frames, settings.image_size, seed=settings.seed, **settings.model_settings)
        processor = tiny_processor(num_frames, settings.image_size, settings.max_audio_seconds)
        return model, processor
    model = BlemoreForBlendedEmotionRecognition.from_pretrained_backbones(
        settings.video_backbone, settings.audio_backbone, **settings.model_settings
    )
    processor = BlemoreProcessor.from_backbones(
        settings.video_backbone, settings.audio_backbone, num_frames=settings.num_frames,
        max_audio_seconds=settings.max_audio_seconds,
    )  # fmt: skip
    return model, processor


# ---------------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------------


def validation_scores(config, predictions, truth, grid: ThresholdGrid = TOOLKIT_GRID) -> dict:
    """Challenge accuracies on validation, decoded with the config's decoder after tuning α/β where it has them.

    The accuracies are computed by ``challenge.challenge_scores`` on the decoded predictions, the same code as
    ``blemore score`` and the evaluate module. Returns them with the thresholds found (``presence_threshold``,
    ``salience_threshold``) and the score with the config's current parameters (``untuned_score``).
    """
    from blemore_toolkit.metrics.blemore.challenge import challenge_scores
    from blemore_toolkit.modeling.decoding_blemore import decode_outcomes, outcomes_to_predictions

    references = outcomes_to_predictions(truth)

    def scored(outcomes) -> dict:
        result = challenge_scores(references, outcomes_to_predictions(outcomes))
        return {key: result[key] for key in METRICS}

    probs = emotion_probabilities(predictions)
    outcome_probs = outcome_probabilities(predictions)
    parameters = config.decoding_parameters
    untuned = scored(decode_outcomes(outcome_probs if outcome_probs is not None else probs, **parameters))
    if parameters["decoder"] != "thresholds":
        return {**untuned, "untuned_score": untuned["score"]}
    search = tune_thresholds(probs, truth, grid=grid)
    thresholds = {"presence_threshold": search.presence_threshold, "salience_threshold": search.salience_threshold}
    return {**scored(decode_outcomes(probs, **{**parameters, **thresholds})), **thresholds,
            "untuned_score": untuned["score"]}


def challenge_metrics(config, tune_thresholds: bool = True, grid: ThresholdGrid = TOOLKIT_GRID):
    """A ``compute_metrics`` for the Trainer: the challenge accuracies of the model's decoded predictions.

    ``config`` is the model's (its decoder and α/β decode the logits); the labels are outcome indices (what
    ``ClipCollator`` gives). With ``tune_thresholds`` (the default, what ``blemore train`` does on a validation fold)
    α/β are searched on these predictions and reported (``eval_presence_threshold``, ``eval_salience_threshold``)
    beside ``eval_untuned_score``, the score with the config's own thresholds; without it only the config's
    thresholds are used; ``grid`` is the α/β grid searched (the toolkit's or ``PAPER_GRID``). Scored by
    ``challenge.challenge_scores``, the code of the metric and of ``blemore score``.

    ```python
    trainer = Trainer(..., compute_metrics=challenge_metrics(model.config))
    trainer.evaluate()  # {"eval_acc_presence": ..., "eval_acc_salience": ..., "eval_score": ..., ...}
    ```
    """

    def compute_metrics(eval_prediction) -> dict:
        truth = np.asarray(eval_prediction.label_ids)
        if truth.ndim != 1:
            raise ValueError(f"challenge_metrics: labels must be outcome indices (0-35), got shape {truth.shape}")
        if tune_thresholds:
            return validation_scores(config, eval_prediction.predictions, truth, grid)
        return untuned_scores(config, eval_prediction.predictions, truth)

    return compute_metrics


def untuned_scores(config, predictions, truth) -> dict:
    """Challenge accuracies of the predictions decoded with the config's own decoder and thresholds."""
    from blemore_toolkit.metrics.blemore.challenge import challenge_scores
    from blemore_toolkit.modeling.decoding_blemore import decode_outcomes, outcomes_to_predictions

    probabilities = outcome_probabilities(predictions)
    if probabilities is None:
        probabilities = emotion_probabilities(predictions)
    outcomes = decode_outcomes(probabilities, **config.decoding_parameters)
    result = challenge_scores(outcomes_to_predictions(truth), outcomes_to_predictions(outcomes))
    return {key: result[key] for key in METRICS}


# ---------------------------------------------------------------------------------------------------------------
# One training run (a fold, or the final fit)
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What one run leaves: where its model is, its validation metrics and predictions (None for the final fit)."""

    name: str
    model_dir: Path
    metrics: dict | None
    clip_ids: list[str] | None = None
    probabilities: np.ndarray | None = None
    truth: np.ndarray | None = None


def may_leave_parameters_unused(config) -> bool:
    """Whether a training step can leave trainable weights without a gradient, which DDP must then search for.

    Only an audio layer selection that stops below the top layer does (the layers above it cannot affect the
    output); otherwise every weight is used, and asking DDP to search costs time and warns on every run.
    """
    layers = getattr(config, "audio_hidden_layers", None)
    if layers is None or config.audio_config is None or config.freeze_audio_encoder or isinstance(layers, str):
        return False
    num_states = config.audio_config.num_hidden_layers + 1
    return max(index % num_states for index in layers) < num_states - 1


def training_arguments(settings: TrainSettings, run_dir: Path, has_validation: bool, model_config=None):
    import torch
    from transformers import TrainingArguments

    eval_batch_size = settings.eval_batch_size or settings.batch_size
    paper = settings.recipe == "paper"
    return TrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=eval_batch_size,
        learning_rate=settings.lr,
        weight_decay=settings.weight_decay,
        warmup_steps=settings.warmup_ratio,
        lr_scheduler_type="cosine",
        eval_strategy="epoch" if has_validation else "no",
        save_strategy="epoch",
        save_total_limit=2,
        # The best epoch is restored by ``_restore_best_checkpoint``: the Trainer's own loader reads raw state dicts
        # and misses weights transformers renames on save (VideoMAE's q_bias/v_bias), from_pretrained does not.
        load_best_model_at_end=False,
        metric_for_best_model="score" if has_validation else None,
        greater_is_better=True,
        logging_steps=settings.logging_steps,
        dataloader_num_workers=settings.num_workers,
        dataloader_persistent_workers=settings.num_workers > 0,
        remove_unused_columns=False,
        label_names=[LABEL_KEY],
        report_to="none",
        seed=settings.seed,
        bf16=settings.bf16,
        # The HiCMAE paper recipe: fp16 autocast with loss scaling on a GPU, and the last incomplete batch dropped.
        fp16=paper and not settings.bf16 and torch.cuda.is_available(),
        dataloader_drop_last=paper,
        activation_checkpointing=settings.gradient_checkpointing,
        disable_tqdm=not settings.progress,
        use_cpu=not torch.cuda.is_available(),
        ddp_find_unused_parameters=model_config is not None and may_leave_parameters_unused(model_config),
    )


def _last_checkpoint(run_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    checkpoints = run_dir / "checkpoints"
    return get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None


def train_run(
    name: str, train_split, eval_split, settings: TrainSettings, thresholds: dict | None = None
) -> RunResult:
    """Train one model with the Trainer; with ``eval_split``, keep the best epoch and tune α/β on it.

    ``thresholds`` (``presence_threshold``/``salience_threshold``) are written into the config of a run without
    validation. The model and processor are saved to ``OUTPUT/<name>/model`` and the metrics to ``results.json``.
    """
    run_dir = Path(settings.output_dir) / name
    model_dir = run_dir / "model"
    fingerprint = run_fingerprint(settings, train_split, eval_split, thresholds)
    if settings.resume and (run_dir / "results.json").is_file() and model_dir.is_dir():
        check_resumable(run_dir, fingerprint, finished=True)
        return _finished_run(name, run_dir)
    if settings.resume and _last_checkpoint(run_dir) is not None:
        check_resumable(run_dir, fingerprint, finished=False)

    with cpu_threads_beside_workers(settings.num_workers):
        return _train_and_save(name, run_dir, train_split, eval_split, settings, thresholds, fingerprint)


# ---------------------------------------------------------------------------------------------------------------
# What --resume may reuse: a run made from the same clips, labels and settings
# ---------------------------------------------------------------------------------------------------------------

#: Settings that do not change what a run learns (where it writes, how it reports, how fast it loads data).
_NOT_LEARNT = ("output_dir", "resume", "progress", "num_workers", "logging_steps", "eval_batch_size",
               "trust_remote_code")
#: Settings a stopped run may be continued with other values of (train a stopped run for longer).
_CONTINUABLE = ("epochs", "max_steps")
FINGERPRINT_FILE = "fingerprint.json"


def _split_digest(split) -> dict | None:
    """Count and digest of a split's clips and outcomes (what a run trains or validates on)."""
    import hashlib

    if split is None:
        return None
    clips = list(split["clip_id"])
    outcomes = list(split["outcome"]) if "outcome" in split.column_names else [None] * len(clips)
    digest = hashlib.sha256("\n".join(f"{c}\t{o}" for c, o in sorted(zip(clips, map(str, outcomes)))).encode())
    return {"count": len(clips), "sha256": digest.hexdigest()}


def run_fingerprint(settings: TrainSettings, train_split, eval_split, thresholds: dict | None) -> dict:
    """Everything a run's result depends on besides the code: its settings, the clips and labels it trains and
    validates on, and the thresholds given to a run without validation."""
    return {"settings": {key: value for key, value in asdict(settings).items() if key not in _NOT_LEARNT},
            "training_clips": _split_digest(train_split), "validation_clips": _split_digest(eval_split),
            "thresholds": {key: float(value) for key, value in (thresholds or {}).items()}}


def _first_difference(before, now, path: str = "") -> tuple[str, object, object] | None:
    if isinstance(before, dict) and isinstance(now, dict):
        for key in list(before) + [k for k in now if k not in before]:
            found = _first_difference(before.get(key), now.get(key), f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
        return None
    return None if before == now else (path, before, now)


def check_resumable(run_dir: Path, fingerprint: dict, finished: bool) -> None:
    """``BlemoreError`` (one line saying what differs) unless the run in ``run_dir`` was made from the same clips,
    labels and settings as ``fingerprint`` (a stopped run may continue with other ``epochs``/``max_steps``)."""
    path = run_dir / FINGERPRINT_FILE
    try:
        recorded = json.loads(path.read_text())
    except FileNotFoundError:
        raise BlemoreError(f"{run_dir}: --resume cannot tell which data and settings this run was made with (no "
                           f"{FINGERPRINT_FILE}: made by an older version); rerun without --resume into another "
                           "--output-dir") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BlemoreError(f"{path}: unreadable ({error}); rerun without --resume into another --output-dir"
                           ) from None
    from blemore_toolkit.evaluation.scoring import json_text

    before, now = recorded, json.loads(json_text(fingerprint))
    if not finished:
        before = {**before, "settings": {k: v for k, v in before.get("settings", {}).items()
                                         if k not in _CONTINUABLE}}
        now = {**now, "settings": {k: v for k, v in now["settings"].items() if k not in _CONTINUABLE}}
    found = _first_difference(before, now)
    if found is not None:
        what, there, here = found
        if what.endswith(".sha256") or what.endswith(".count"):
            what, there, here = what.rsplit(".", 1)[0], "other clips or labels", "these"
        state = "finished" if finished else "stopped"
        raise BlemoreError(f"{run_dir}: --resume would reuse a {state} run made with other data or settings "
                           f"({what}: {there} there, {here} now); rerun without --resume into another --output-dir, "
                           "or with the same data and settings")


def _train_and_save(name: str, run_dir: Path, train_split, eval_split, settings: TrainSettings,
                    thresholds: dict | None, fingerprint: dict) -> RunResult:
    from transformers import Trainer

    model_dir = run_dir / "model"
    if _is_main_process():  # before any checkpoint exists, so that a stopped run can be checked too
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_json(run_dir / FINGERPRINT_FILE, fingerprint)
    model, processor = build_model(settings)
    arguments = training_arguments(settings, run_dir, eval_split is not None, model.config)
    if settings.model == "hicmae":
        from blemore_toolkit.training.hicmae import trainer_parts

        parts = trainer_parts(settings, model, processor, train_split, eval_split, arguments)
    else:
        parts = {"train_dataset": clip_stream(train_split, processor, with_labels=True),
                 "eval_dataset": clip_stream(eval_split, processor, with_labels=True) if eval_split is not None
                 else None,
                 "data_collator": ClipCollator(processor)}
    trainer = Trainer(
        model=model,
        args=arguments,
        compute_metrics=(challenge_metrics(model.config, grid=settings.threshold_grid)
                         if eval_split is not None else None),
        **parts,
    )
    checkpoint = _last_checkpoint(run_dir) if settings.resume else None
    trainer.train(resume_from_checkpoint=checkpoint)
    if eval_split is not None:
        _restore_best_checkpoint(trainer)

    result = RunResult(name, model_dir, None)
    if eval_split is not None:
        prediction = trainer.predict(parts["eval_dataset"], metric_key_prefix="val")
        truth = np.asarray(labelled_outcomes(eval_split))
        metrics = validation_scores(model.config, prediction.predictions, truth, settings.threshold_grid)
        thresholds = {key: metrics[key] for key in ("presence_threshold", "salience_threshold") if key in metrics}
        metrics["best_checkpoint"] = trainer.state.best_model_checkpoint
        metrics["epochs_trained"] = trainer.state.epoch
        result = RunResult(name, model_dir, metrics, list(eval_split["clip_id"]),
                           emotion_probabilities(prediction.predictions), truth)
    for key, value in (thresholds or {}).items():
        setattr(trainer.model.config, key, float(value))

    if trainer.is_world_process_zero():
        trainer.save_model(str(model_dir))
        processor.save_pretrained(model_dir)
        _write_json(run_dir / "results.json", {"name": name, "metrics": result.metrics, "settings": asdict(settings),
                                               "training_clips": list(train_split["clip_id"])})
        if result.probabilities is not None:
            from blemore_toolkit.evaluation.probabilities import write_probabilities

            write_probabilities(run_dir / "validation_probabilities.csv", result.clip_ids, result.probabilities,
                                truth=result.truth)
    trainer.accelerator.wait_for_everyone()
    return result


def _restore_best_checkpoint(trainer) -> None:
    """Put the weights of the best validation epoch back into the model (loaded the way ``from_pretrained`` does)."""
    best = trainer.state.best_model_checkpoint
    if best is None:
        return
    model = trainer.accelerator.unwrap_model(trainer.model)
    best_model = type(model).from_pretrained(best)
    model.load_state_dict(best_model.state_dict())


def _finished_run(name: str, run_dir: Path) -> RunResult:
    """A run finished by an earlier invocation (``--resume``): its metrics and validation predictions from disk."""
    from blemore_toolkit.evaluation.probabilities import read_probabilities

    results = json.loads((run_dir / "results.json").read_text())
    metrics = results.get("metrics")
    if metrics is not None:  # an undefined figure is stored as null (JSON has no NaN)
        metrics = {key: float("nan") if value is None and key in METRICS else value for key, value in metrics.items()}
    result = RunResult(name, run_dir / "model", metrics)
    probabilities_path = run_dir / "validation_probabilities.csv"
    if result.metrics is not None and probabilities_path.is_file():
        result.clip_ids, result.probabilities, result.truth = read_probabilities(probabilities_path)
    if _is_main_process():
        print(f"{name}: finished earlier, reusing {run_dir / 'model'}")
    return result


# ---------------------------------------------------------------------------------------------------------------
# Folds, the table and the final fit
# ---------------------------------------------------------------------------------------------------------------


def summary_table(results: list[RunResult]) -> dict:
    """Per-fold metrics, their mean and (sample) standard deviation over folds, and with two or more folds the
    pooled out-of-fold figure (``pooled_out_of_fold``) with its actor-bootstrap interval."""
    rows = {result.name: {key: result.metrics[key] for key in METRICS} for result in results}
    summary = {}
    for key in METRICS:
        values = np.array([row[key] for row in rows.values()], dtype=float)
        summary[key] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
    table = {"folds": rows, "summary": summary}
    if len(results) > 1 and all(r.probabilities is not None and r.clip_ids for r in results):
        table["pooled"] = pooled_out_of_fold(results)
    return table


def pooled_out_of_fold(results: list[RunResult]) -> dict:
    """Every fold's validation clips taken together, decoded with one α/β tuned on them all (the final fit's
    thresholds, so slightly optimistic), with a 95 % actor-bootstrap interval."""
    from blemore_toolkit.evaluation.statistics import decoded_with_interval

    thresholds = pooled_thresholds(results)
    return decoded_with_interval(np.concatenate([r.probabilities for r in results]),
                                 np.concatenate([r.truth for r in results]),
                                 [clip for r in results for clip in r.clip_ids],
                                 thresholds["presence_threshold"], thresholds["salience_threshold"])


def format_table(table: dict) -> str:
    width = max(len(name) for name in table["folds"]) + 2
    lines = [f"{'':<{width}}" + "".join(f"{key:>16}" for key in METRICS)]
    for name, row in table["folds"].items():
        lines.append(f"{name:<{width}}" + "".join(f"{row[key]:>16.3f}" for key in METRICS))
    cells = "".join(f"{table['summary'][key]['mean']:>8.3f} ± {table['summary'][key]['std']:.3f}" for key in METRICS)
    lines.append(f"{'mean±std':<{width}}" + cells)
    if "pooled" in table:
        from blemore_toolkit.evaluation.statistics import format_interval

        pooled = table["pooled"]
        lines.append(f"pooled out-of-fold ({pooled['n_clips']} clips, α={pooled['presence_threshold']:.2f} "
                     f"β={pooled['salience_threshold']:.2f}; {int(100 * pooled['ci_level'])}% {pooled['ci_method']} "
                     f"over {pooled['n_clusters']}): " + ", ".join(f"{key} {format_interval(pooled, key)}"
                                                                   for key in METRICS))
    return "\n".join(lines)


def pooled_thresholds(results: list[RunResult], grid: ThresholdGrid = TOOLKIT_GRID) -> dict:
    """α/β tuned on the folds' validation predictions taken together (every train clip predicted out of fold)."""
    probabilities = np.concatenate([result.probabilities for result in results])
    truth = np.concatenate([result.truth for result in results])
    search = tune_thresholds(probabilities, truth, grid=grid)
    return {"presence_threshold": search.presence_threshold, "salience_threshold": search.salience_threshold,
            "pooled_score": search.score, "choice": "pooled out-of-fold"}


def best_fold_thresholds(results: list[RunResult]) -> dict:
    """The α/β of the fold with the highest composite validation score (ties: the first fold), as the paper."""
    best = max(results, key=lambda result: np.nan_to_num(result.metrics["score"], nan=-1.0))
    return {"presence_threshold": best.metrics["presence_threshold"],
            "salience_threshold": best.metrics["salience_threshold"], "choice": f"best fold ({best.name})"}


def final_fit_thresholds(results: list[RunResult], settings: TrainSettings) -> dict:
    """The final fit's α/β under the settings' protocol (paper: best fold; toolkit: pooled out-of-fold)."""
    if settings.protocol == "paper":
        return best_fold_thresholds(results)
    return pooled_thresholds(results, settings.threshold_grid)


def run_training(dataset_dir: str, fold: str, settings: TrainSettings, thresholds: dict | None = None) -> dict:
    """Train as ``fold`` says (``"0"``…``"4"``, ``"all"``, ``"none"``); returns (and writes) the run's summary."""
    folds = list(FOLDS) if fold == "all" else [] if fold == "none" else [int(fold)]
    _require_training_clips(dataset_dir, folds)
    _require_loadable_init(settings)
    if _is_main_process():  # so a launcher that silently starts one process (accelerate's --cpu) is noticed
        print(_world_size_line(), flush=True)
    results = []
    for k in folds:
        train_split = load_split(dataset_dir, f"fold{k}", "train")
        eval_split = load_split(dataset_dir, f"fold{k}", "validation")
        results.append(train_run(f"fold{k}", train_split, eval_split, settings))
        if _is_main_process():  # every process has the same (gathered) metrics; one prints them
            print(f"fold{k}: " + ", ".join(f"{key} {results[-1].metrics[key]:.3f}" for key in METRICS), flush=True)

    summary: dict = {"dataset": str(dataset_dir), "fold": fold,
                     "model": {"tiny": settings.tiny, "init_from": settings.init_from,
                               "video_backbone": settings.video_backbone, "audio_backbone": settings.audio_backbone}}
    if results:
        summary["validation"] = summary_table(results)
        summary["model_dir"] = str(results[-1].model_dir)
        summary["thresholds_source"] = "validation_fold"
        if _is_main_process():
            print(format_table(summary["validation"]))
    if fold in ("all", "none"):
        final_thresholds = dict(thresholds or {})
        summary["thresholds_source"] = "given" if final_thresholds else (
            "pooled_folds" if len(results) > 1 else "init_from" if settings.init_from else "default")
        if len(results) > 1 and not final_thresholds:
            final_thresholds = final_fit_thresholds(results, settings)
        decoding = {key: final_thresholds[key] for key in ("presence_threshold", "salience_threshold")
                    if key in final_thresholds}
        final = train_run("final", load_split(dataset_dir, "default", "train"), None, settings, decoding)
        summary["final"] = {"model_dir": str(final.model_dir), **final_thresholds}
        summary["model_dir"] = str(final.model_dir)
    if _is_main_process():
        _write_json(Path(settings.output_dir) / "results.json", summary)
        if summary.get("model_dir"):  # the results travel with the model (model.push_to_hub writes them in its card)
            from blemore_toolkit.training.model_card import save_card_facts

            save_card_facts(summary)
    return summary


def _require_training_clips(dataset_dir: str, folds: list[int]) -> None:
    """One line, before any work, when the folder has no labelled training clips or not the folds asked for."""
    if not (Path(dataset_dir) / "README.md").is_file():
        return  # load_split says what the folder is not
    splits = card_splits(dataset_dir)
    if "train" not in splits.get("default", []):
        raise BlemoreError(f"{dataset_dir}: no labelled training clips (its splits: "
                           f"{', '.join(splits.get('default', [])) or 'none'}); prepare a download that includes the "
                           "training clips")
    missing = [k for k in folds if f"fold{k}" not in splits]
    if missing:
        present = sorted(name for name in splits if name.startswith("fold"))
        raise BlemoreError(f"{dataset_dir}: no clips of fold {missing[0]} to validate on (fold configs here: "
                           f"{', '.join(present) or 'none'}); choose another --fold, or --fold none")


def _require_loadable_init(settings: TrainSettings) -> None:
    """One line, before any data is read, when the ``--init-from`` model cannot be loaded (damaged files, or code of
    its own without ``--trust-remote-code``): loading it once costs a second or so, reading the dataset first
    could cost minutes before the same error."""
    if settings.init_from:
        build_model(settings)


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _world_size_line() -> str:
    """``training in N process(es) on DEVICE``, from what torchrun / accelerate launch set."""
    import torch

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return f"training in {world_size} process{'es' if world_size != 1 else ''} on {device} (world size {world_size})"


def _write_json(path: Path, data: dict) -> None:
    write_text_atomically(path, json.dumps(data, indent=2, default=str) + "\n")


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------


__all__ = ["TrainSettings", "build_model", "challenge_metrics", "final_fit_thresholds", "run_training", "train_run",
           "validation_scores"]
