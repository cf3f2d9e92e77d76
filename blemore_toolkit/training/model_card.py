"""Model cards for trained BLEMORE models, and pushing a model with its card.

The card is built with ``huggingface_hub.ModelCard``: YAML metadata with a ``model-index`` holding the
cross-validated challenge accuracies (mean over the actor-disjoint folds, per fold in the text), the dataset link,
then usage with ``trust_remote_code=True`` pinned to a revision, the training set-up and the limitations.

The pinned revision is the commit that holds the weights and code, which only exists once they are pushed; so
``push_model_with_card`` pushes the folder, then writes the card naming that commit and pushes the card alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import blemore
from metrics.blemore.challenge import METRICS

#: How the card names each metric of the validation table.
METRIC_LABELS = {"acc_presence": "ACC_presence", "acc_salience": "ACC_salience", "score": "challenge score"}


def metric_name(key: str, num_folds: int) -> str:
    """The card's name of a validation metric: ``"ACC_presence (mean of 5 validation folds)"``."""
    where = f"mean of {num_folds} validation folds" if num_folds > 1 else "one validation fold"
    return f"{METRIC_LABELS[key]} ({where})"

CITATION = blemore._CITATION.strip()


def _model_summary(model_dir: Path) -> dict:
    config = json.loads((model_dir / "config.json").read_text())
    return {
        "video": (config.get("video_config") or {}).get("model_type"),
        "audio": (config.get("audio_config") or {}).get("model_type"),
        "features": config.get("feature_sizes"),
        "fusion": config.get("fusion"),
        "objective": config.get("objective"),
        "decoder": config.get("decoder"),
        "presence_threshold": config.get("presence_threshold"),
        "salience_threshold": config.get("salience_threshold"),
    }


def render_model_card(summary: dict, repo_id: str, revision: str | None = None, dataset_repo: str | None = None):
    """A ``huggingface_hub.ModelCard`` for the run ``summary`` that ``blemore train`` returns (and writes)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    model_dir = Path(summary["model_dir"])
    model = _model_summary(model_dir)
    dataset_id = dataset_repo or "BLEMORE"
    validation = summary.get("validation")
    eval_results = []
    if validation:
        for key in METRICS:
            eval_results.append(EvalResult(
                task_type="video-classification", task_name="Blended emotion recognition",
                dataset_type=dataset_id, dataset_name="BLEMORE", dataset_split="validation (actor-disjoint folds)",
                metric_type="accuracy" if key != "score" else "mean_accuracy",
                metric_name=metric_name(key, len(validation["folds"])),
                metric_value=round(validation["summary"][key]["mean"], 4),
            ))  # fmt: skip
    data = ModelCardData(
        model_name=repo_id, library_name="transformers", pipeline_tag="video-classification",
        license="other", license_name="blemore-terms", license_link="https://arxiv.org/abs/2601.13225",
        datasets=[dataset_repo] if dataset_repo else None, tags=["blemore", "emotion-recognition", "audio-visual"],
        eval_results=eval_results or None,
    )  # fmt: skip
    pin = f', revision="{revision}"' if revision else ""
    table = ""
    if validation:
        rows = [f"| {name} | " + " | ".join(f"{row[key]:.3f}" for key in METRICS) + " |"
                for name, row in validation["folds"].items()]
        means = " | ".join(f"{validation['summary'][key]['mean']:.3f} ± {validation['summary'][key]['std']:.3f}"
                           for key in METRICS)
        table = "\n".join(["| fold | ACC_presence | ACC_salience | score |", "|---|---|---|---|", *rows,
                           f"| mean ± std | {means} |"])
    else:
        table = "No validation folds were run for this model (trained with `--fold none`)."
    encoders = ", ".join(f"{name}: {kind}" for name, kind in (("video", model["video"]), ("audio", model["audio"]))
                         if kind) or f"precomputed features {model['features']}"
    content = f"""---
{data.to_yaml()}
---

# {repo_id}

A blended-emotion recogniser for BLEMORE (arXiv 2601.13225): from a video clip with its audio it predicts which of
the six emotions (`ang disg fea hap sad neu`) are present and, for a blend of two, their relative salience
(50/50, 70/30 or 30/70), in the challenge's submission format.

- Encoders: {encoders}; fusion `{model['fusion']}`; objective `{model['objective']}`.
- Decoder: `{model['decoder']}` with presence threshold α = {model['presence_threshold']} and salience threshold
  β = {model['salience_threshold']} (tuned on validation and stored in `config.json`).

## Usage

```python
from transformers import AutoModel, AutoProcessor

model = AutoModel.from_pretrained("{repo_id}", trust_remote_code=True{pin})
processor = AutoProcessor.from_pretrained("{repo_id}", trust_remote_code=True{pin})
inputs = processor(videos=["clip.mov"], audio=["clip.mov"])
print(model.decode(model(**inputs)))  # [[{{"emotion": "ang", "salience": 70.0}}, {{"emotion": "hap", ...}}]]
```

Or with the toolkit: `blemore predict {repo_id} DATASET --split test` writes the challenge submission.

## Validation results

Actor-disjoint folds of the BLEMORE train partition (each fold's actors unseen in training); presence and salience
accuracy as the challenge computes them.

{table}

## Training

Trained with `blemore train` (transformers Trainer) on {summary.get('dataset')}, fold setting `{summary.get('fold')}`.
The final model is fitted on all train folds for the same number of epochs; its thresholds:
{(summary.get('final') or {}).get('choice', "tuned on the folds' pooled out-of-fold predictions")}.

## Limitations

- BLEMORE holds acted expressions from 58 actors in controlled recordings; accuracy on spontaneous expressions,
  other recording conditions or other cultures is unknown.
- Only the six emotions and the ten blends of the dataset, at three salience levels, can be predicted.
- Emotion recognition from faces and voices can be misused (surveillance, profiling); do not use it to make
  decisions about people.

## Citation

```bibtex
{CITATION}
```
"""
    return ModelCard(content)


def push_model_with_card(summary: dict, repo_id: str, *, endpoint: str | None = None, private: bool = False,
                         dataset_repo: str | None = None, token: str | None = None):
    """Push the run's model folder, then its card pinned to that commit; returns the ``CommitInfo`` of the weights."""
    from blemore_toolkit.data.hub import push_model_folder

    model_dir = Path(summary["model_dir"])
    render_model_card(summary, repo_id, None, dataset_repo).save(model_dir / "README.md")
    info = push_model_folder(model_dir, repo_id, endpoint=endpoint, private=private, token=token)
    render_model_card(summary, repo_id, info.oid, dataset_repo).save(model_dir / "README.md")
    push_model_folder(model_dir, repo_id, endpoint=endpoint, private=private, token=token,
                      commit_message=f"Model card pinned to {info.oid[:12]}")
    return info
