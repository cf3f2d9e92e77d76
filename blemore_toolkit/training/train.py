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
from blemore_toolkit.evaluation.tuning import tune_thresholds
from blemore_toolkit.training.batches import (
    LABEL_KEY,
    ClipCollator,
    clip_stream,
    cpu_threads_beside_workers,
    labelled_outcomes,
)
from blemore_toolkit.training.predict import emotion_probabilities, outcome_probabilities
from metrics.blemore.challenge import METRICS

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

    from modeling import BlemoreForBlendedEmotionRecognition, BlemoreProcessor

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


def validation_scores(config, predictions, truth) -> dict:
    """Challenge accuracies on validation, decoded with the config's decoder after tuning α/β where it has them.

    The accuracies are computed by ``challenge.challenge_scores`` on the decoded predictions, the same code as
    ``blemore score`` and the evaluate module. Returns them with the thresholds found (``presence_threshold``,
    ``salience_threshold``) and the score with the config's current parameters (``untuned_score``).
    """
    from metrics.blemore.challenge import challenge_scores
    from modeling.decoding_blemore import decode_outcomes, outcomes_to_predictions

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
    search = tune_thresholds(probs, truth)
    thresholds = {"presence_threshold": search.presence_threshold, "salience_threshold": search.salience_threshold}
    return {**scored(decode_outcomes(probs, **{**parameters, **thresholds})), **thresholds,
            "untuned_score": untuned["score"]}


def metrics_for(config):
    """``compute_metrics`` for the Trainer: the challenge score on validation, α/β tuned (``validation_scores``)."""

    def compute_metrics(eval_prediction) -> dict:
        return validation_scores(config, eval_prediction.predictions, np.asarray(eval_prediction.label_ids))

    return compute_metrics


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


def training_arguments(settings: TrainSettings, run_dir: Path, has_validation: bool):
    import torch
    from transformers import TrainingArguments

    eval_batch_size = settings.eval_batch_size or settings.batch_size
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
        activation_checkpointing=settings.gradient_checkpointing,
        disable_tqdm=not settings.progress,
        use_cpu=not torch.cuda.is_available(),
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
    if settings.resume and (run_dir / "results.json").is_file() and model_dir.is_dir():
        return _finished_run(name, run_dir)

    with cpu_threads_beside_workers(settings.num_workers):
        return _train_and_save(name, run_dir, train_split, eval_split, settings, thresholds)


def _train_and_save(name: str, run_dir: Path, train_split, eval_split, settings: TrainSettings,
                    thresholds: dict | None) -> RunResult:
    from transformers import Trainer

    model_dir = run_dir / "model"
    model, processor = build_model(settings)
    trainer = Trainer(
        model=model,
        args=training_arguments(settings, run_dir, eval_split is not None),
        train_dataset=clip_stream(train_split, processor, with_labels=True),
        eval_dataset=clip_stream(eval_split, processor, with_labels=True) if eval_split is not None else None,
        data_collator=ClipCollator(processor),
        compute_metrics=metrics_for(model.config) if eval_split is not None else None,
    )
    checkpoint = _last_checkpoint(run_dir) if settings.resume else None
    trainer.train(resume_from_checkpoint=checkpoint)
    if eval_split is not None:
        _restore_best_checkpoint(trainer)

    result = RunResult(name, model_dir, None)
    if eval_split is not None:
        prediction = trainer.predict(clip_stream(eval_split, processor, with_labels=True), metric_key_prefix="val")
        truth = np.asarray(labelled_outcomes(eval_split))
        metrics = validation_scores(model.config, prediction.predictions, truth)
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
        _write_json(run_dir / "results.json", {"name": name, "metrics": result.metrics, "settings": asdict(settings)})
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
    result = RunResult(name, run_dir / "model", results.get("metrics"))
    probabilities_path = run_dir / "validation_probabilities.csv"
    if result.metrics is not None and probabilities_path.is_file():
        result.clip_ids, result.probabilities, result.truth = read_probabilities(probabilities_path)
    print(f"{name}: finished earlier, reusing {run_dir / 'model'}")
    return result


# ---------------------------------------------------------------------------------------------------------------
# Folds, the table and the final fit
# ---------------------------------------------------------------------------------------------------------------


def summary_table(results: list[RunResult]) -> dict:
    """Per-fold metrics and their mean and (sample) standard deviation over folds."""
    rows = {result.name: {key: result.metrics[key] for key in METRICS} for result in results}
    summary = {}
    for key in METRICS:
        values = np.array([row[key] for row in rows.values()], dtype=float)
        summary[key] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
    return {"folds": rows, "summary": summary}


def format_table(table: dict) -> str:
    width = max(len(name) for name in table["folds"]) + 2
    lines = [f"{'':<{width}}" + "".join(f"{key:>16}" for key in METRICS)]
    for name, row in table["folds"].items():
        lines.append(f"{name:<{width}}" + "".join(f"{row[key]:>16.3f}" for key in METRICS))
    cells = "".join(f"{table['summary'][key]['mean']:>8.3f} ± {table['summary'][key]['std']:.3f}" for key in METRICS)
    lines.append(f"{'mean±std':<{width}}" + cells)
    return "\n".join(lines)


def pooled_thresholds(results: list[RunResult]) -> dict:
    """α/β tuned on the folds' validation predictions taken together (every train clip predicted out of fold)."""
    probabilities = np.concatenate([result.probabilities for result in results])
    truth = np.concatenate([result.truth for result in results])
    search = tune_thresholds(probabilities, truth)
    return {"presence_threshold": search.presence_threshold, "salience_threshold": search.salience_threshold,
            "pooled_score": search.score}


def run_training(dataset_dir: str, fold: str, settings: TrainSettings, thresholds: dict | None = None) -> dict:
    """Train as ``fold`` says (``"0"``…``"4"``, ``"all"``, ``"none"``); returns (and writes) the run's summary."""
    folds = list(FOLDS) if fold == "all" else [] if fold == "none" else [int(fold)]
    _require_training_clips(dataset_dir, folds)
    results = []
    for k in folds:
        train_split = load_split(dataset_dir, f"fold{k}", "train")
        eval_split = load_split(dataset_dir, f"fold{k}", "validation")
        results.append(train_run(f"fold{k}", train_split, eval_split, settings))
        print(f"fold{k}: " + ", ".join(f"{key} {results[-1].metrics[key]:.3f}" for key in METRICS), flush=True)

    summary: dict = {"dataset": str(dataset_dir), "fold": fold}
    if results:
        summary["validation"] = summary_table(results)
        summary["model_dir"] = str(results[-1].model_dir)
        print(format_table(summary["validation"]))
    if fold in ("all", "none"):
        final_thresholds = dict(thresholds or {})
        if len(results) > 1 and not final_thresholds:
            final_thresholds = pooled_thresholds(results)
        decoding = {key: final_thresholds[key] for key in ("presence_threshold", "salience_threshold")
                    if key in final_thresholds}
        final = train_run("final", load_split(dataset_dir, "default", "train"), None, settings, decoding)
        summary["final"] = {"model_dir": str(final.model_dir), **final_thresholds}
        summary["model_dir"] = str(final.model_dir)
    if _is_main_process():
        _write_json(Path(settings.output_dir) / "results.json", summary)
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


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _write_json(path: Path, data: dict) -> None:
    write_text_atomically(path, json.dumps(data, indent=2, default=str) + "\n")


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------


__all__ = ["TrainSettings", "build_model", "run_training", "train_run", "validation_scores"]
