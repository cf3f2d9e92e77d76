"""Model cards for trained BLEMORE models, and pushing a model with its card.

The card is built with ``huggingface_hub.ModelCard``: YAML metadata with a ``model-index`` holding the
cross-validated challenge accuracies (mean over the actor-disjoint folds, per fold in the text), the dataset link,
then usage with ``trust_remote_code=True`` pinned to a revision, the training set-up and the limitations.

The pinned revision is the commit that holds the weights and code, which only exists once they are pushed; so
``push_model_with_card`` pushes the folder, then writes the card naming that commit and pushes the card alone.
"""

from __future__ import annotations

import os
from pathlib import Path

from blemore_toolkit.data.hub import check_repo_id
from blemore_toolkit.modeling.model_card_blemore import is_hub_id, metric_name, read_card_facts, write_card_facts


def training_paragraph(summary: dict, dataset_repo: str | None = None) -> str:
    """What happened in the run, in words: data, model start, folds, and where α/β come from."""
    if dataset_repo:
        check_repo_id(dataset_repo, "--dataset-repo")
    # local folders by their names only: the card is published, the paths on this machine are nobody's business
    data = f"the Hub dataset [{dataset_repo}](https://huggingface.co/datasets/{dataset_repo})" if dataset_repo else (
        f"the prepared dataset folder `{_public_name(summary.get('dataset'))}`")
    model = summary.get("model") or {}
    if model.get("init_from"):
        start = f"continued from the BLEMORE model `{_public_name(model['init_from'])}`"
    elif model.get("tiny"):
        start = "the toolkit's tiny demo model (randomly initialised encoders, no pretrained weights)"
    else:
        names = (("video", "video_backbone"), ("audio", "audio_backbone"))
        backbones = ", ".join(f"{name} `{model[key]}`" for name, key in names if model.get(key))
        start = f"pretrained encoders ({backbones})" if backbones else "the configured encoders"
    fold = summary.get("fold")
    folds = {"all": "five actor-disjoint validation folds, then a final fit on all train clips for the same number "
                    "of epochs",
             "none": "no validation folds (`--fold none`): only the final fit on all train clips"}.get(
        str(fold), f"validation on fold {fold}, training on the other four")
    source = {
        "given": "were given on the command line (`--presence-threshold`/`--salience-threshold`)",
        "pooled_folds": "come from the five validation folds: "
                        + ((summary.get("final") or {}).get("choice") or "pooled out-of-fold"),
        "validation_fold": f"were tuned on validation fold {fold}",
        "init_from": "are those of the `--init-from` model (not tuned in this run)",
        "default": "are the config's defaults (not tuned)",
    }.get(summary.get("thresholds_source"), "are stored in `config.json`")
    return (f"Trained with `blemore train` (transformers Trainer) on {data}, starting from {start}; {folds}. "
            f"The decoder's thresholds α/β {source}.")


def _public_name(source) -> str:
    """A model or dataset as a published card may name it: a Hub repo id as it is, a local folder by its name."""
    text = str(source or "")
    if os.path.isabs(text) or text.startswith(("~", ".")) or os.path.exists(text):
        text = Path(text).name or "?"
    return text.replace("`", "'")


def card_facts(summary: dict, dataset_repo: str | None = None, metric_repo: str | None = None) -> dict:
    """What the run adds to the config's card (keywords of ``model_card_blemore.render_model_card``)."""
    model = summary.get("model") or {}
    backbones = [model[key] for key in ("video_backbone", "audio_backbone") if is_hub_id(model.get(key))]
    if not backbones and is_hub_id(model.get("init_from")):
        backbones = [model["init_from"]]
    return {"validation": summary.get("validation"), "training": training_paragraph(summary, dataset_repo),
            "random_encoders": bool(model.get("tiny")), "dataset_repo": dataset_repo, "metric_repo": metric_repo,
            "base_model": backbones or None}


def save_card_facts(summary: dict, dataset_repo: str | None = None, metric_repo: str | None = None) -> None:
    """Store the run's card facts in its model folder, so ``model.push_to_hub`` of that model writes the same card."""
    write_card_facts(summary["model_dir"], **card_facts(summary, dataset_repo, metric_repo))


def render_model_card(summary: dict, repo_id: str, revision: str | None = None, dataset_repo: str | None = None,
                      metric_repo: str | None = None):
    """A ``huggingface_hub.ModelCard`` for the run ``summary`` that ``blemore train`` returns (and writes).

    The same card ``model.push_to_hub`` writes (``blemore_toolkit.modeling.model_card_blemore``), with the run's
    validation table and what happened in training. A dataset or metric repo saved with the model (see
    ``save_card_facts``) is used where none is given.
    """
    from huggingface_hub import ModelCard

    if dataset_repo:
        check_repo_id(dataset_repo, "--dataset-repo")

    from blemore_toolkit.modeling import BlemoreConfig
    from blemore_toolkit.modeling.model_card_blemore import render_model_card as render_from_config

    saved = read_card_facts(summary["model_dir"])
    dataset_repo = dataset_repo or saved.get("dataset_repo")
    metric_repo = metric_repo or saved.get("metric_repo")
    config = BlemoreConfig.from_pretrained(Path(summary["model_dir"]))
    return ModelCard(render_from_config(config, repo_id, revision=revision,
                                        **card_facts(summary, dataset_repo, metric_repo)))


def push_model_with_card(summary: dict, repo_id: str, *, endpoint: str | None = None, private: bool = False,
                         dataset_repo: str | None = None, token: str | None = None, metric_repo: str | None = None):
    """Push the run's model folder, then its card pinned to that commit; returns the ``CommitInfo`` of the weights."""
    from blemore_toolkit.data.hub import push_model_folder

    model_dir = Path(summary["model_dir"])
    save_card_facts(summary, dataset_repo, metric_repo)
    render_model_card(summary, repo_id, None, dataset_repo, metric_repo).save(model_dir / "README.md")
    info = push_model_folder(model_dir, repo_id, endpoint=endpoint, private=private, token=token)
    render_model_card(summary, repo_id, info.oid, dataset_repo, metric_repo).save(model_dir / "README.md")
    push_model_folder(model_dir, repo_id, endpoint=endpoint, private=private, token=token,
                      commit_message=f"Model card pinned to {info.oid[:12]}")
    return info


__all__ = ["card_facts", "metric_name", "push_model_with_card", "render_model_card", "save_card_facts",
           "training_paragraph"]
