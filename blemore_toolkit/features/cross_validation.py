"""Cross-validation of a head over the actor-disjoint folds, and the test fit on all of them.

Reusable by any head that takes a protocol: ``cross_validate`` trains fold ``k``'s heads through a ``HeadRecipe``
(``head_training.py``) on the other folds, searches α/β on fold ``k``, and pools the out-of-fold probabilities;
``fit_final`` trains on every labelled training clip; ``format_table`` and ``write_cv_outputs`` report the folds
(``OUTPUT/cv/``, see ``heads.py``).

**α/β of the test fit**: paper — the α/β of the fold with the highest composite score. Toolkit — one search on the
pooled out-of-fold probabilities of all five folds (every training clip, predicted by a head that never saw its
actor): the per-fold optima vary a lot between folds on the real data, and one search on 2,456 clips is steadier
than one fold's choice. Both are reported.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import blemore
from blemore import BlemoreError
from blemore_toolkit.data.atomic import write_text_atomically
from blemore_toolkit.evaluation.scoring import json_text
from blemore_toolkit.evaluation.tuning import outcome_scores, tune_thresholds
from blemore_toolkit.features.feature_table import Design, FeatureTable
from blemore_toolkit.features.head_training import HeadRecipe, HeadSettings, Validation, _resolve_recipe
from blemore_toolkit.features.protocols import HeadProtocol
from blemore_toolkit.metrics.blemore.challenge import METRICS


@dataclasses.dataclass
class CrossValidation:
    """Per-fold results, the validation probabilities of every fold and the pooled out-of-fold search.

    ``folds[i]`` holds ``fold``, ``n_clips``, ``alpha``/``beta`` (= ``presence_threshold``/``salience_threshold``,
    searched on that fold's probabilities with the protocol's grid), ``acc_presence``, ``acc_salience``,
    ``score``, ``best_epoch`` and ``with_pooled_thresholds``. ``training_clips[k]``: the table rows fold ``k``'s
    heads were trained on. ``oof_probabilities``: each labelled training clip's probabilities from the fold that
    held it out.
    """

    folds: list[dict]
    oof_probabilities: np.ndarray
    oof_mask: np.ndarray
    pooled: dict
    seconds: float
    training_clips: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)
    epoch_scores: dict[int, list[list[float]]] = dataclasses.field(default_factory=dict)

    def summary(self) -> dict:
        result = {}
        for metric in METRICS:
            values = np.array([f[metric] for f in self.folds], dtype=np.float64)
            result[metric] = {"mean": float(np.nanmean(values)),
                              "std": float(np.nanstd(values, ddof=1)) if len(values) > 1 else 0.0}
        return result


def _labelled_train(table: FeatureTable) -> np.ndarray:
    return (table.split == "train") & (table.outcome >= 0) & (table.fold >= 0)


def cross_validate(table: FeatureTable, settings: HeadSettings, groups: Sequence[Sequence[str]] | None = None,
                   progress: bool = False, designs: Sequence[Design] | None = None,
                   recipe: HeadRecipe | None = None) -> CrossValidation:
    """K-fold CV over the ``fold`` column of the labelled training rows, as ``settings.training`` says.

    Fold ``k``'s heads train on the rows of labelled training clips whose fold is not ``k`` (recorded in
    ``training_clips``) and are evaluated on fold ``k``'s clips, where α/β are searched on the protocol's grid.
    ``groups``: feature-config groups whose heads are trained separately and whose probabilities are averaged
    (late fusion); default one group with every config (early fusion). ``designs``: the rows of each group
    (default: aggregation, one row per clip, of the recipe's inputs). ``recipe``: how the head reads, trains and
    predicts (default: the statistics heads; see ``HeadRecipe``).
    """
    from tqdm.auto import tqdm

    from blemore_toolkit.modeling.decoding_blemore import threshold_outcomes

    training = settings.training
    start_time = time.perf_counter()
    groups = [list(g) for g in (groups or [list(table.features)])]
    recipe = _resolve_recipe(settings, recipe)
    designs = list(designs) if designs is not None else [recipe.design(table, g) for g in groups]
    labelled = _labelled_train(table)
    folds = sorted(set(table.fold[labelled].tolist()))
    if len(folds) < 2:
        raise BlemoreError(f"cross-validation needs labelled training clips in at least two folds, found {folds}")
    probabilities = np.zeros((len(table.clip_ids), len(blemore.EMOTIONS)))
    results, training_clips, epoch_scores = [], {}, {}
    for fold in tqdm(folds, desc=f"cv {settings.head} ({training.name})", unit="fold", disable=not progress):
        train_clips, valid_clips = labelled & (table.fold != fold), labelled & (table.fold == fold)
        valid_index = np.flatnonzero(valid_clips)
        position = np.full(len(table.clip_ids), -1)
        position[valid_index] = np.arange(len(valid_index))
        fold_probs = np.zeros((len(valid_index), len(blemore.EMOTIONS)))
        best_epochs, epoch_scores[int(fold)] = [], []
        for design in designs:
            train_rows, valid_rows = design.rows_of(train_clips), design.rows_of(valid_clips)
            validation = Validation(design.x[valid_rows], position[design.clip[valid_rows]],
                                    table.outcome[valid_index], training.grid)
            fitted = recipe.fit(design.x[train_rows], table.soft_target[design.clip[train_rows]], design.sizes,
                                settings, seed=settings.seed + fold, validation=validation)
            fold_probs += fitted.probabilities / len(groups)
            # the clips whose rows this fold's heads were given, read back from the rows themselves
            training_clips[int(fold)] = np.unique(design.clip[train_rows])
            best_epochs.append(fitted.best_epoch)
            epoch_scores[int(fold)].append(fitted.epoch_scores)
        probabilities[valid_clips] = fold_probs
        search = tune_thresholds(fold_probs, table.outcome[valid_clips], grid=training.grid)
        results.append({"fold": int(fold), "n_clips": int(valid_clips.sum()), **search.as_dict(),
                        "alpha": search.presence_threshold, "beta": search.salience_threshold,
                        "best_epoch": best_epochs[0] if len(best_epochs) == 1 else best_epochs})
    pooled_search = tune_thresholds(probabilities[labelled], table.outcome[labelled], grid=training.grid)
    for result in results:
        # every fold decoded with the one pooled α/β. That search saw every fold's clips, this fold's included,
        # so these figures are not held out: they show how much one shared α/β costs or gains, nothing more.
        rows = labelled & (table.fold == result["fold"])
        decoded = threshold_outcomes(probabilities[rows], pooled_search.presence_threshold,
                                     pooled_search.salience_threshold)
        scores = outcome_scores(table.outcome[rows], decoded)
        result["with_pooled_thresholds"] = {m: scores[m] for m in METRICS}
    pooled = {"presence_threshold": pooled_search.presence_threshold,
              "salience_threshold": pooled_search.salience_threshold,
              "acc_presence": pooled_search.acc_presence, "acc_salience": pooled_search.acc_salience,
              "score": pooled_search.score,
              "mean_fold_thresholds": [float(np.mean([r["presence_threshold"] for r in results])),
                                       float(np.mean([r["salience_threshold"] for r in results]))]}
    from blemore_toolkit.evaluation.statistics import decoded_with_interval

    interval = decoded_with_interval(probabilities[labelled], table.outcome[labelled],
                                     [c for c, keep in zip(table.clip_ids, labelled) if keep],
                                     pooled_search.presence_threshold, pooled_search.salience_threshold)
    pooled.update({key: interval[key] for key in ("ci", "ci_level", "ci_method", "n_clusters")})
    return CrossValidation(results, probabilities, labelled, pooled, time.perf_counter() - start_time,
                           training_clips, epoch_scores)


def best_fold(cv: CrossValidation) -> dict:
    """The fold with the highest composite score (mean of the two accuracies); ties: the lowest fold id."""
    return max(sorted(cv.folds, key=lambda f: f["fold"]), key=lambda f: np.nan_to_num(f["score"], nan=-1.0))


def test_fit_thresholds(cv: CrossValidation, training: HeadProtocol) -> tuple[tuple[float, float], str]:
    """(α, β) the test fit is decoded with, as the protocol says, and a sentence saying where they come from."""
    if training.test_fit_thresholds == "best_fold":
        fold = best_fold(cv)
        return ((fold["presence_threshold"], fold["salience_threshold"]),
                f"the α/β of the best fold (fold {fold['fold']}, composite score {fold['score']:.4f})")
    return ((cv.pooled["presence_threshold"], cv.pooled["salience_threshold"]),
            "tuned on the pooled out-of-fold probabilities of the five folds")


def format_table(cv: CrossValidation, title: str = "") -> str:
    """The per-fold rows and the mean ± std row as a plain-text table."""
    lines = [title] if title else []
    lines.append(f"{'fold':>6} {'clips':>6} {'epoch':>5} {'α':>5} {'β':>5} " + " ".join(f"{m:>13}" for m in METRICS))
    for row in cv.folds:
        epoch = row.get("best_epoch")
        epoch = epoch if isinstance(epoch, int) else "-"
        lines.append(f"{row['fold']:>6} {row['n_clips']:>6} {epoch:>5} {row['presence_threshold']:>5.2f} "
                     f"{row['salience_threshold']:>5.2f} " + " ".join(f"{row[m]:>13.4f}" for m in METRICS))
    summary = cv.summary()
    lines.append(f"{'mean':>6} {'':>6} {'':>5} {'':>5} {'':>5} "
                 + " ".join(f"{summary[m]['mean']:>6.4f}±{summary[m]['std']:<6.4f}" for m in METRICS))
    p = cv.pooled
    lines.append(f"pooled out-of-fold, one α/β for all folds: α={p['presence_threshold']:.2f} "
                 f"β={p['salience_threshold']:.2f} acc_presence={p['acc_presence']:.4f} "
                 f"acc_salience={p['acc_salience']:.4f} score={p['score']:.4f}")
    if "ci" in p:
        from blemore_toolkit.evaluation.statistics import format_interval

        lines.append(f"  {int(100 * p['ci_level'])}% {p['ci_method']} over {p['n_clusters']}: "
                     + ", ".join(f"{m} {format_interval(p, m)}" for m in METRICS))
    return "\n".join(lines)


def fit_final(table: FeatureTable, settings: HeadSettings, groups: Sequence[Sequence[str]], thresholds: tuple,
              designs: Sequence[Design] | None = None, recipe: HeadRecipe | None = None):
    """Heads trained on every labelled training clip (the protocol's test-fit epochs), decoded with ``thresholds``."""
    training = settings.training
    labelled = _labelled_train(table)
    recipe = _resolve_recipe(settings, recipe)
    designs = list(designs) if designs is not None else [recipe.design(table, g) for g in groups]
    models = []
    for design in designs:
        rows = design.rows_of(labelled)
        model = recipe.fit(design.x[rows], table.soft_target[design.clip[rows]], design.sizes, settings,
                           seed=settings.seed + 100, epochs=training.test_fit_epochs).model
        model.config.presence_threshold, model.config.salience_threshold = map(float, thresholds)
        model.config.decoding_rule = "thresholds"
        # read by `blemore predict`: a subsampling head scores windows, and a clip is its windows' mean logits
        model.config.feature_method = settings.method
        models.append(model)
    return models


def write_cv_outputs(cv: CrossValidation, table: FeatureTable, folder: Path, settings: HeadSettings,
                     extra: dict | None = None) -> Path:
    """``folder/cv/fold{k}/validation_probabilities.csv`` and ``folder/cv/results.json`` (see ``heads.py``)."""

    cv_dir = Path(folder) / "cv"
    for row in cv.folds:
        rows = np.flatnonzero(cv.oof_mask & (table.fold == row["fold"]))
        lines = [",".join(["clip_id", *blemore.EMOTIONS])]
        lines += [",".join([table.clip_ids[i], *(repr(float(p)) for p in cv.oof_probabilities[i])]) for i in rows]
        (cv_dir / f"fold{row['fold']}").mkdir(parents=True, exist_ok=True)
        write_text_atomically(cv_dir / f"fold{row['fold']}" / "validation_probabilities.csv", "\n".join(lines) + "\n")
    keys = ("fold", "n_clips", "alpha", "beta", "acc_presence", "acc_salience", "score", "best_epoch",
            "with_pooled_thresholds")
    results = {**settings.as_dict(), "folds": [{k: row[k] for k in keys if k in row} for row in cv.folds],
               "summary": cv.summary(), "pooled_out_of_fold": cv.pooled, "cv_seconds": cv.seconds, **(extra or {})}
    write_text_atomically(cv_dir / "results.json", json_text(results))
    return cv_dir


__all__ = [
    "CrossValidation", "best_fold", "cross_validate", "fit_final", "format_table", "test_fit_thresholds",
    "write_cv_outputs",
]
