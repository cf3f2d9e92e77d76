"""The Hub model card of a BLEMORE model, written from what the model knows (its config) plus what a run adds.

``model.push_to_hub(repo)`` writes it with nothing but the config; ``blemore train --push-to-hub`` passes the
validation table, the training facts and the dataset repo as well, and the toolkit's ``BlemoreTrainer`` (its
``push_to_hub()``) the last evaluation of each set it evaluated and how it trained. Either way the card's
``pipeline_tag`` is the task the model's pipeline is registered for, and its usage is code that works on the pushed
files.

Shipped as Hub remote code (flat folder, relative imports only, no ``blemore`` import).
"""

from __future__ import annotations

import json
import os
import re

from .pipeline_blemore import AUDIO_TASK, pipeline_task

#: What a run knows beyond the config (validation table, training paragraph, dataset and metric repos, backbones),
#: saved beside the weights so that `model.push_to_hub` of the saved model writes the same card as the run.
CARD_FACTS_FILE = "blemore_card.json"
#: The keys of that file, as `render_model_card` keywords.
CARD_FACTS = ("validation", "training", "random_encoders", "dataset_repo", "metric_repo", "base_model", "tags")
#: Hub metric id of the accuracies when no BLEMORE metric repo is given (the challenge score is their mean).
ACCURACY_METRIC = "accuracy"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

#: The dataset paper, as ``blemore._CITATION`` states it (a test checks they are equal).
CITATION = """\
@misc{lachmann2026blemore,
  title         = {Not all Blends are Equal: The {BLEMORE} Dataset of Blended Emotion Expressions with Relative
                   Salience Annotations},
  author        = {Lachmann and others},
  year          = {2026},
  eprint        = {2601.13225},
  archivePrefix = {arXiv},
}
"""

#: The tags every BLEMORE card has (a run may add its own, ``render_model_card(tags=...)``).
BASE_TAGS = ("blemore", "emotion-recognition", "audio-visual")
#: What the validation table says it holds when the validation results do not describe themselves.
FOLDS_DESCRIPTION = ("Actor-disjoint folds of the BLEMORE train partition (each fold's actors unseen in training); "
                     "presence and salience\naccuracy as the challenge computes them.")
#: The model-index split of cross-validated results.
FOLDS_SPLIT = "validation (actor-disjoint folds)"

#: How the card names the three challenge metrics.
METRIC_LABELS = {"acc_presence": "ACC_presence", "acc_salience": "ACC_salience", "score": "challenge score"}
#: Marks the template card transformers writes when a repo has none (replaced by this card on push).
TRANSFORMERS_TEMPLATE_MARK = "This is the model card of a 🤗 transformers model that has been pushed on the Hub"
#: Marks the generic card `Trainer.push_to_hub` writes (also replaced by this card on `model.push_to_hub`).
TRAINER_CARD_MARK = "This model card has been generated automatically according to the information the Trainer had"
#: Cards a BLEMORE model's push replaces: transformers' stand-ins, which know nothing of BLEMORE.
GENERIC_CARD_MARKS = (TRANSFORMERS_TEMPLATE_MARK, TRAINER_CARD_MARK)


def is_hub_id(name: str | None) -> bool:
    """Whether ``name`` reads as a Hub repo id (``owner/name``) and is not a folder or file on this machine."""
    return bool(name) and bool(_HUB_ID.match(name)) and ".." not in name and not os.path.exists(name)


def backbone_ids(config) -> list[str]:
    """The Hub ids the encoders were loaded from (`from_pretrained_backbones`), as the card's ``base_model``."""
    names = []
    for name in ("video", "audio"):
        sub = getattr(config, f"{name}_config")
        source = (getattr(sub, "_name_or_path", "") or getattr(sub, "name_or_path", "")) if sub is not None else ""
        if is_hub_id(source) and source not in names:
            names.append(source)
    return names


def read_card_facts(folder) -> dict:
    """The card facts saved in a model folder (empty when there are none)."""
    path = os.path.join(os.fspath(folder), CARD_FACTS_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        facts = json.load(f)
    return {key: facts[key] for key in CARD_FACTS if facts.get(key) is not None}


def write_card_facts(folder, **facts) -> None:
    """Save card facts (keywords of `render_model_card`) in a model folder."""
    unknown = set(facts) - set(CARD_FACTS)
    if unknown:
        raise ValueError(f"not card facts: {sorted(unknown)} (known: {CARD_FACTS})")
    path = os.path.join(os.fspath(folder), CARD_FACTS_FILE)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump({key: value for key, value in facts.items() if value is not None}, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


def metric_name(key: str, num_folds: int, split: str | None = None) -> str:
    """The card's name of a validation metric: ``"ACC_presence (mean of 5 validation folds)"``.

    ``split``: the name of the one evaluation set the value comes from, when it is not a fold of the folds table
    (``"ACC_presence (fold0 validation)"``)."""
    if split:
        return f"{METRIC_LABELS[key]} ({split})"
    where = f"mean of {num_folds} validation folds" if num_folds > 1 else "one validation fold"
    return f"{METRIC_LABELS[key]} ({where})"


def describe_encoders(config, random_encoders: bool = False) -> str:
    """What the model encodes with, by architecture and, where the config recorded it, the checkpoint it came from."""
    parts = []
    for name in ("video", "audio"):
        sub = getattr(config, f"{name}_config")
        if sub is None:
            continue
        source = getattr(sub, "_name_or_path", "") or getattr(sub, "name_or_path", "")
        if random_encoders:
            parts.append(f"{name}: a tiny, randomly initialised `{sub.model_type}` (no pretrained weights)")
        else:
            parts.append(f"{name}: `{sub.model_type}`" + (f" from `{source}`" if source else ""))
    if config.feature_sizes:
        parts.append(f"precomputed features {dict(config.feature_sizes)}")
    return "; ".join(parts)


def _usage(config, repo_id: str, pin: str) -> str:
    task = pipeline_task(config)
    if task is None:
        width = sum(int(size) for size in config.feature_sizes.values())
        return f"""```python
import torch
from transformers import AutoModelForVideoClassification

model = AutoModelForVideoClassification.from_pretrained("{repo_id}", trust_remote_code=True{pin})
features = torch.randn(1, {width})  # the feature inputs {dict(config.feature_sizes)} concatenated in that order
print(model.decode(model(features=features)))  # [[{{"emotion": "ang", "salience": 70.0}}, ...]]
```"""
    auto_class = "AutoModelForAudioClassification" if task == AUDIO_TASK else "AutoModelForVideoClassification"
    inputs = ", ".join(f'{keyword}=["clip.mov"]' for name, keyword in (("video", "videos"), ("audio", "audio"))
                       if name in config.modality_names)
    return f"""```python
from transformers import pipeline

classify = pipeline(model="{repo_id}", trust_remote_code=True{pin})  # task: {task}
classify("clip.mov")  # a path, the file's bytes or a dataset row; a list is batched
# [{{"label": "ang", "score": 0.52}}, {{"label": "hap", "score": 0.31}}, ...]  (best first; top_k=...)
classify("clip.mov", blend=True)  # the blend and its salience, in the challenge's format
# {{"emotions": [{{"emotion": "ang", "salience": 70.0}}, {{"emotion": "hap", "salience": 30.0}}],
#  "outcome": "mix_ang_hap_70_30", "probabilities": {{"ang": 0.52, "disg": 0.03, ...}}}}
```

`emotions` is the challenge's submission format (and that of the `blemore` evaluate metric). The model and its
processor directly:

```python
from transformers import {auto_class}, AutoProcessor

model = {auto_class}.from_pretrained("{repo_id}", trust_remote_code=True{pin})
processor = AutoProcessor.from_pretrained("{repo_id}", trust_remote_code=True{pin})
outputs = model(**processor({inputs}))
print(model.decode(outputs))  # [[{{"emotion": "ang", "salience": 70.0}}, {{"emotion": "hap", "salience": 30.0}}]]
```

`AutoModel` gives the base `BlemoreModel` (fused embeddings, no head)."""


def render_model_card(
    config,
    repo_id: str,
    *,
    revision: str | None = None,
    dataset_repo: str | None = None,
    validation: dict | None = None,
    training: str | None = None,
    random_encoders: bool = False,
    metric_repo: str | None = None,
    base_model: str | list[str] | None = None,
    tags: list[str] | None = None,
) -> str:
    """The card's text (YAML header + body).

    ``validation``: ``{"folds": {name: {metric: value}}, "summary": {metric: {"mean", "std"}}}`` (what
    ``blemore train`` computes; the table has a mean ± std row when there is more than one fold), or, for evaluation
    sets that are not cross-validation folds (what ``BlemoreTrainer`` records), ``{"folds": {set name: {metric:
    value}}, "description": "what the sets are"}`` without ``summary``: each set is then its own model-index result
    and the description replaces the text about folds above the table. ``training``: a paragraph saying how the
    model was trained and where its thresholds come from; ``random_encoders``: the encoders were never pretrained
    (the demo's tiny model).
    ``dataset_repo``: the Hub id of the dataset (``blemore push``), the model-index's dataset type: without it the
    validation results stay in the text only. ``metric_repo``: the Hub id of the published ``blemore`` metric, the
    metric type of the three results (default: ``accuracy``). ``base_model``: the backbones' Hub ids (default: those
    the config's encoders were loaded from). ``tags``: tags added to the card's own (``blemore``, ...).
    """
    from huggingface_hub import EvalResult, ModelCardData

    metrics = list(METRIC_LABELS)
    task = pipeline_task(config)
    eval_results = []
    summary = (validation or {}).get("summary")
    if validation and dataset_repo:
        # cross-validation: one result per metric, the mean over the folds; other evaluation sets: one per set
        results = ([(FOLDS_SPLIT, None, {key: summary[key]["mean"] for key in metrics})] if summary else
                   [(name, name, row) for name, row in validation["folds"].items()])
        for split, set_name, values in results:
            for key in metrics:
                eval_results.append(EvalResult(
                    task_type=task or "video-classification", task_name="Blended emotion recognition",
                    dataset_type=dataset_repo, dataset_name="BLEMORE", dataset_split=split,
                    metric_type=metric_repo or ACCURACY_METRIC,
                    metric_name=metric_name(key, len(validation["folds"]), set_name),
                    metric_value=round(values[key], 4),
                ))  # fmt: skip
    if base_model is None:
        base_model = backbone_ids(config)
    if isinstance(base_model, list) and len(base_model) == 1:
        base_model = base_model[0]
    data = ModelCardData(
        # model_name only names the model-index entry; without results it would be a stray key
        model_name=repo_id if eval_results else None, library_name="transformers", pipeline_tag=task,
        base_model=base_model or None,
        license="other", license_name="blemore-terms", license_link="https://arxiv.org/abs/2601.13225",
        datasets=[dataset_repo] if dataset_repo else None,
        tags=[*BASE_TAGS, *(tag for tag in dict.fromkeys(tags or ()) if tag not in BASE_TAGS)],
        eval_results=eval_results or None,
    )  # fmt: skip
    pin = f', revision="{revision}"' if revision else ""
    if validation:
        rows = [f"| {name} | " + " | ".join(f"{row[key]:.3f}" for key in metrics) + " |"
                for name, row in validation["folds"].items()]
        if summary and len(rows) > 1:  # a spread over one fold would read as a measured ± 0
            means = " | ".join(f"{summary[key]['mean']:.3f} ± {summary[key]['std']:.3f}" for key in metrics)
            rows.append(f"| mean ± std | {means} |")
        header = "| fold | ACC_presence | ACC_salience | score |" if summary else (
            "| evaluation set | ACC_presence | ACC_salience | score |")
        table = "\n".join([header, "|---|---|---|---|", *rows])
        description = validation.get("description") or FOLDS_DESCRIPTION
    else:
        table = "No validation results were recorded for this model."
        description = FOLDS_DESCRIPTION
    training = training or "Not recorded with the model (pushed with `model.push_to_hub`)."
    return f"""---
{data.to_yaml()}
---

# {repo_id}

A blended-emotion recogniser for BLEMORE (arXiv 2601.13225): from a video clip with its audio it predicts which of
the six emotions (`ang disg fea hap sad neu`) are present and, for a blend of two, their relative salience
(50/50, 70/30 or 30/70), in the challenge's submission format.

- Encoders: {describe_encoders(config, random_encoders)}; fusion `{config.fusion}`; objective `{config.objective}`.
- Decoding rule: `{config.decoding_rule}` with presence threshold α = {config.presence_threshold} and salience
  threshold β = {config.salience_threshold} (stored in `config.json`).

## Usage

{_usage(config, repo_id, pin)}

## Validation results

{description}

{table}

## Training

{training}

## Limitations

- BLEMORE holds acted expressions from 58 actors in controlled recordings; accuracy on spontaneous expressions,
  other recording conditions or other cultures is unknown.
- Only the six emotions and the ten blends of the dataset, at three salience levels, can be predicted.
- Emotion recognition from faces and voices can be misused (surveillance, profiling); do not use it to make
  decisions about people.

## Citation

```bibtex
{CITATION.strip()}
```
"""


__all__ = [
    "BASE_TAGS",
    "CARD_FACTS",
    "CARD_FACTS_FILE",
    "CITATION",
    "GENERIC_CARD_MARKS",
    "backbone_ids",
    "is_hub_id",
    "metric_name",
    "read_card_facts",
    "render_model_card",
    "write_card_facts",
]
