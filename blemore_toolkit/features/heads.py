"""``blemore heads FEATURE_CONFIG... --dataset DATASET --head mlp512 --protocol paper|toolkit``: heads on features.

The organisers' baseline experiment in one command: per-clip feature vectors (``blemore features``), one or more
encoders early-fused by concatenation (or late-fused by averaging the heads' probabilities), standardisation
fitted on the training folds only, the soft-label KL objective, 5-fold cross-validation over the actor-disjoint
folds with the presence/salience thresholds α/β searched on each validation fold (``tuning.tune_thresholds``), a
mean ± std table, and the test fit on all five training folds.

**Protocols** (``--protocol``, defined side by side in ``protocols.py``): ``paper`` is the organisers' protocol point
by point (Adam with L2 decay, lr 5e-6, batch 32, 200 epochs, ReLU, no dropout, torch's default init, per-feature
standardisation, every epoch evaluated and the best epoch by composite score kept per fold, their 20 × 20 α/β grid
with ties to the lowest α then β, a 100-epoch test fit decoded with the best fold's α/β); ``toolkit`` (the
default) trains faster and selects nothing on the validation fold (docs/recipes.md says how and why).

**Methods** (``--method``): ``aggregation`` trains on each clip's seven statistics; ``subsampling`` (clip encoders)
trains on every stored window vector of a clip as its own example with the clip's soft target, standardised over
the training windows, and predicts a clip from its windows' logits averaged before the softmax.

Heads (``--head``):

* ``linear``, ``mlp256``, ``mlp512`` — the paper's: a linear map, or one hidden layer of 256/512 units (the
  protocol's activation), on the concatenated, standardised features (configs concatenated in alphabetical order);
* ``concat``, ``gated``, ``cross_attention`` — the model's fusion heads with one feature input per feature config
  (each projected to ``--hidden`` units, then fused; see ``blemore_toolkit.modeling.BlemoreConfig.fusion``);
* ``attention_pool``, ``temporal_transformer``, ``cross_modal`` — sequence heads on the stored per-window sequences
  rather than the statistics (``features/sequence_heads.py``; aggregation method only). They plug into the CV,
  α/β tuning, test fit, saving and submission through a ``HeadRecipe`` (``sequence_heads.head_recipe(head)``
  gives the recipe of any head) and are trained as the protocol says: its optimiser, learning rate, weight decay,
  batch size, epochs, dropout, precision, epoch selection, grid and test-fit rules; their standardisation is the
  per-window one of ``sequence_heads``.

**Outputs of every run**: ``OUTPUT/cv/fold{k}/validation_probabilities.csv`` (``clip_id``, then the six
probabilities in the order ``ang disg fea hap sad neu``; under the paper protocol those of the best epoch) and
``OUTPUT/cv/results.json`` (per fold ``alpha``, ``beta``, ``acc_presence``, ``acc_salience``, ``score``,
``best_epoch``; the protocol's hyper-parameters; the test fit's α/β and where they come from). Beside the model,
for ``blemore ensemble``: ``OUTPUT/oof_probabilities.csv`` (the same out-of-fold probabilities in one file, with each
clip's outcome) and, after the test fit, ``OUTPUT/test_probabilities.csv``.

The parts, in the order data flows through them: ``feature_table.py`` reads the feature configs and makes the rows
a head trains on; ``head_training.py`` trains one head as the protocol says (the saved model, the span shortcut);
``cross_validation.py`` runs the folds, the α/β searches and the test fit; this module saves the model folder,
the probabilities and the submission, and runs the whole command (``run_heads_pipeline``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from blemore import BlemoreError
from blemore_toolkit.data.atomic import write_text_atomically
from blemore_toolkit.evaluation.scoring import json_text
from blemore_toolkit.features.configs import FEATURES_DIR, PROVENANCE_FILE
from blemore_toolkit.features.cross_validation import (
    CrossValidation,
    cross_validate,
    fit_final,
    format_table,
    test_fit_thresholds,
    write_cv_outputs,
)
from blemore_toolkit.features.feature_table import FeatureTable, subsampling_design
from blemore_toolkit.features.head_training import (
    SEQUENCE_HEADS,
    STATISTICS_RECIPE,
    HeadRecipe,
    HeadSettings,
    _resolve_recipe,
    clip_probabilities,
)

# ---------------------------------------------------------------------------------------------------------------
# Saving: the model folder (weights, remote code, card, report) and the submission
# ---------------------------------------------------------------------------------------------------------------


def _model_card(report: dict, table_text: str) -> str:
    configs = report["feature_configs"]
    inputs = report["model_feature_sizes"]
    subsampling_note = ("\nSubsampling: the model scores one window vector; a clip's prediction is its windows' "
                        "logits averaged, then the softmax and the decoding below.\n"
                        if report["method"] == "subsampling" else "")
    return f"""---
library_name: transformers
tags:
- blemore
- emotion-recognition
- blended-emotions
---
# BLEMORE {report['head']} head on {', '.join(configs)}

{_card_inputs(report, configs, inputs)}
{subsampling_note}

Decoding thresholds: α = {report['thresholds'][0]:.2f}, β = {report['thresholds'][1]:.2f}
({report['threshold_choice']}).

## 5-fold cross-validation (actor-disjoint folds, α/β searched per validation fold)

```
{table_text}
```

Feature provenance and training settings: `heads_report.json`.
"""


def _card_inputs(report: dict, configs: list[str], inputs: dict) -> str:
    trained_by = f"`blemore heads --protocol {report['protocol']} --method {report['method']}`"
    if report["head"] in SEQUENCE_HEADS:
        return f"""A `BlemoreForBlendedEmotionRecognition` with a `{report['head']}` sequence head, trained by
{trained_by} on the per-window sequences that `blemore features` stores (`sequence` column), soft-label KL
objective, per-window standardisation fitted on the training folds and stored in the model. Sequence inputs
(`config.feature_sizes`, window widths): {inputs}.

```python
from transformers import AutoModelForVideoClassification, AutoProcessor

model = AutoModelForVideoClassification.from_pretrained("PATH_OR_REPO", trust_remote_code=True)
processor = AutoProcessor.from_pretrained("PATH_OR_REPO", trust_remote_code=True)  # pads the windows
clips = [{{name: row_sequence[name] for name in model.config.feature_sizes}}]  # (windows, width) per input
predictions = model.decode(model(**processor(clips)))  # features + feature_masks
```"""
    return f"""A `BlemoreForBlendedEmotionRecognition` trained by {trained_by} on precomputed encoder features
(`blemore features`), soft-label KL objective, standardisation fitted on the training folds and stored in the
model. Feature inputs (`config.feature_sizes`): {inputs}.

```python
import torch
from transformers import AutoModelForVideoClassification

model = AutoModelForVideoClassification.from_pretrained("PATH_OR_REPO", trust_remote_code=True)
features = torch.tensor(rows["features"])  # (batch, {sum(inputs.values())}): {' + '.join(configs)} concatenated
predictions = model.decode(model(features=features))  # [[{{"emotion": "ang", "salience": 70.0}}, ...], ...]
```"""


def save_head(model, folder: Path, report: dict, table_text: str) -> Path:
    """``save_pretrained`` plus the card and report."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    write_text_atomically(folder / "heads_report.json", json_text(report))
    (folder / "README.md").write_text(_model_card(report, table_text))
    return folder


#: What ``blemore ensemble`` reads from a heads run folder (written by ``run_heads_pipeline``).
OOF_PROBABILITIES_FILE = "oof_probabilities.csv"
TEST_PROBABILITIES_FILE = "test_probabilities.csv"


def write_run_probabilities(output: Path, table: FeatureTable, cv: CrossValidation,
                            test_probabilities: np.ndarray | None) -> dict[str, str]:
    """The inputs of a later late fusion (``blemore ensemble``), beside the model: the out-of-fold probabilities of
    every labelled training clip with its outcome (the numbers of ``cv/fold*/validation_probabilities.csv`` in one
    file, with the truth the ensemble checks against the dataset) and the test fit's test probabilities."""
    from blemore_toolkit.evaluation.probabilities import write_probabilities

    output.mkdir(parents=True, exist_ok=True)
    rows = cv.oof_mask
    written = {"oof": str(write_probabilities(output / OOF_PROBABILITIES_FILE,
                                              [c for c, keep in zip(table.clip_ids, rows) if keep],
                                              cv.oof_probabilities[rows], table.outcome[rows]))}
    if test_probabilities is not None:
        test_rows = table.split == "test"
        written["test"] = str(write_probabilities(output / TEST_PROBABILITIES_FILE,
                                                  [c for c, keep in zip(table.clip_ids, test_rows) if keep],
                                                  test_probabilities))
    return written


def _provenance(dataset_dir: Path, names: Sequence[str]) -> dict:
    return {n: json.loads((dataset_dir / FEATURES_DIR / n / PROVENANCE_FILE).read_text()) for n in names}


def run_heads_pipeline(
    dataset_dir: str | os.PathLike,
    names: Sequence[str],
    settings: HeadSettings,
    *,
    output: str | os.PathLike | None = None,
    late_fusion: bool = False,
    submission: str | os.PathLike | None = None,
    push_to_hub: str | None = None,
    hub_endpoint: str | None = None,
    cv_only: bool = False,
    progress: bool = True,
    recipe: HeadRecipe | None = None,
) -> dict:
    """CV table and outputs, test fit, saved model(s), optional submission and push. Returns the report."""
    dataset_dir = Path(dataset_dir)
    names = sorted(names)  # the order BlemoreConfig keeps feature inputs in (see load_feature_table)
    training = settings.training
    recipe = _resolve_recipe(settings, recipe)
    if settings.method == "subsampling" and recipe is not STATISTICS_RECIPE:
        raise BlemoreError(f"--head {settings.head} reads whole per-window sequences; --method subsampling is for "
                           "the statistics heads")
    table = recipe.load(dataset_dir, names)
    groups = [[n] for n in names] if late_fusion else [list(names)]
    if settings.method == "subsampling":
        designs = [subsampling_design(dataset_dir, table, g) for g in groups]
    else:
        designs = [recipe.design(table, g) for g in groups]
    fusion = "late (probabilities averaged)" if late_fusion and len(names) > 1 else "early (concatenation)"
    if settings.head in SEQUENCE_HEADS and not (late_fusion and len(names) > 1):
        fusion = "one sequence model over every config's windows"
    cv = cross_validate(table, settings, groups, progress=progress, designs=designs, recipe=recipe)
    title = (f"{settings.head} on {' + '.join(names)} ({fusion}, {settings.method}, protocol {training.name}), "
             f"{cv.seconds:.1f} s")
    table_text = format_table(cv, title)
    print(table_text)
    thresholds, choice = test_fit_thresholds(cv, training)
    test_epochs = training.test_fit_epochs or training.epochs_for(settings.method)
    output = Path(output or f"heads-{settings.head}-{'-'.join(names)}")
    test_fit = {"alpha": float(thresholds[0]), "beta": float(thresholds[1]), "choice": choice,
                "epochs": test_epochs, "trained": not cv_only}
    cv_dir = write_cv_outputs(cv, table, output, settings, {"feature_configs": list(names), "fusion": fusion,
                                                            "test_fit": test_fit})
    report = {
        "head": settings.head, "feature_configs": list(names), "fusion": fusion, "protocol": training.name,
        "method": settings.method, "settings": settings.as_dict(), "cv_folds": cv.folds,
        "cv_summary": cv.summary(), "cv_pooled": cv.pooled, "cv_seconds": cv.seconds, "cv_dir": str(cv_dir),
        "thresholds": list(thresholds), "threshold_choice": choice, "test_fit_epochs": test_epochs,
        "feature_provenance": _provenance(dataset_dir, names),
    }
    if cv_only:
        report["probability_files"] = write_run_probabilities(output, table, cv, None)
        return report
    models = fit_final(table, settings, groups, thresholds, designs, recipe=recipe)
    folders = []
    for group, model in zip(groups, models):
        folder = output / group[0] if late_fusion and len(groups) > 1 else output
        save_head(model, folder, {**report, "model_feature_sizes": dict(model.config.feature_sizes)}, table_text)
        folders.append(folder)
    report["model_folders"] = [str(f) for f in folders]
    if late_fusion and len(groups) > 1:
        write_text_atomically(output / "late_fusion.json", json_text(
            {"members": [str(f.relative_to(output)) for f in folders], "thresholds": list(thresholds),
             "rule": "average the members' softmax probabilities, then decode with the thresholds"}))
    test_rows = table.split == "test"
    probs = None
    if test_rows.any():
        probs = sum(clip_probabilities(recipe.logits(m, d.x), d.clip, len(table.clip_ids))
                    for d, m in zip(designs, models)) / len(models)
        probs = probs[test_rows]
    report["probability_files"] = write_run_probabilities(output, table, cv, probs)
    if submission is not None:
        if probs is None:
            raise BlemoreError(f"{dataset_dir}: the feature configs hold no test clips to predict")
        from blemore_toolkit.modeling.decoding_blemore import decode

        predictions = decode(probs, "thresholds", presence_threshold=thresholds[0], salience_threshold=thresholds[1])
        from blemore_toolkit.evaluation.submission import write_submission

        clip_ids = [c for c, keep in zip(table.clip_ids, test_rows) if keep]
        report["submission"] = str(write_submission(dict(zip(clip_ids, predictions)), submission))
    if push_to_hub:
        from blemore_toolkit.data.hub import push_model_folder

        if len(folders) > 1:
            raise BlemoreError("--push-to-hub pushes one model; with --late-fusion push each member folder with "
                               "`blemore push`")
        commit = push_model_folder(folders[0], push_to_hub, endpoint=hub_endpoint)
        report["pushed"] = {"repo": push_to_hub, "commit": getattr(commit, "oid", None)}
    for folder in folders:
        sizes = json.loads((folder / "config.json").read_text())["feature_sizes"]
        write_text_atomically(folder / "heads_report.json", json_text({**report, "model_feature_sizes": sizes}))
    return report



__all__ = ["OOF_PROBABILITIES_FILE", "TEST_PROBABILITIES_FILE", "run_heads_pipeline", "save_head",
           "write_run_probabilities"]
