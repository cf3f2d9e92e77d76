"""``blemore predict MODEL DATASET --split test``: a challenge submission and per-clip probabilities from a model.

``MODEL`` is a saved BLEMORE model folder (``blemore train`` writes ``OUTPUT/final/model`` and
``OUTPUT/fold{k}/model``) or a Hub repo id (loaded with this package's classes; the code a repo ships runs only
with ``--trust-remote-code``); the model's config holds the decoder
and the thresholds tuned at training time, so predictions are decoded exactly as they were validated.

Writes into ``--output-dir``:

* ``predictions.json``: the challenge's JSON (keys ``<clip>.mov``),
* ``submission.zip``: the file to upload (the JSON inside, as the challenge expects),
* ``probabilities.csv``: clip id, the six emotion probabilities (and the true outcome when the split has labels),

after checking the submission as ``blemore validate`` would: one prediction per clip of the split, well formed.
For a labelled split (e.g. ``--config fold2 --split validation``) the challenge scores are printed as well.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import numpy as np

import blemore
from blemore_toolkit.evaluation.probabilities import check_probabilities, write_probabilities
from blemore_toolkit.training.batches import ClipCollator, clip_stream, cpu_threads_beside_workers

# ---------------------------------------------------------------------------------------------------------------
# Probabilities on disk
# ---------------------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------------------
# Prediction
# ---------------------------------------------------------------------------------------------------------------


def emotion_probabilities(predictions) -> np.ndarray:
    """(N, 6) emotion probabilities from what ``Trainer.predict`` returns (logits, or a tuple starting with them).

    For both objectives the softmax of ``logits`` is the predicted salience proportion of each emotion (an
    ``"outcome"`` model's ``logits`` are the log of the proportions its 36-way distribution implies).
    """
    from blemore_toolkit.modeling.decoding_blemore import softmax

    logits = predictions[0] if isinstance(predictions, (tuple, list)) else predictions
    return softmax(logits)


def outcome_probabilities(predictions) -> np.ndarray | None:
    """(N, 36) outcome probabilities when the model has a 36-way head (its second output), else None."""
    from blemore_toolkit.modeling.decoding_blemore import softmax

    if isinstance(predictions, (tuple, list)) and len(predictions) > 1 and predictions[1] is not None:
        return softmax(predictions[1])
    return None


def load_model(model: str, revision: str | None = None, trust_remote_code: bool = False):
    """A BLEMORE model and its processor from a folder or Hub repo.

    BLEMORE models load with this package's own classes (registered with the Auto classes), so the code a model
    folder or repo ships is not run unless ``trust_remote_code`` says so (``--trust-remote-code``). A model on
    precomputed features (``blemore heads``) has no processor: ``None`` is returned for it.
    """
    local = Path(model)
    if local.exists() and not (local / "config.json").is_file():
        raise blemore.BlemoreError(f"{local}: no config.json; give a folder written by `blemore train` (…/model)")
    if not local.exists() and not _could_be_a_repo_id(model):
        raise blemore.BlemoreError(f"{model}: no such folder (a model is a folder written by `blemore train`, "
                                   "…/model, or a Hub repo id such as namespace/name)")
    loaded = load_blemore_model(model, revision=revision, trust_remote_code=trust_remote_code)
    processor = None
    if loaded.config.model_type == "hicmae":  # HiCMAE's own processor (face frames and log-mel)
        from blemore_toolkit.modeling import HicmaeProcessor

        processor = HicmaeProcessor.from_pretrained(model, revision=revision)
    elif loaded.config.video_config is not None or loaded.config.audio_config is not None:
        processor = load_blemore_processor(model, revision=revision)
    return loaded.eval(), processor


def _could_be_a_repo_id(model: str) -> bool:
    """Whether a name that is no local folder may name a Hub repo (``name`` or ``namespace/name``)."""
    parts = model.split("/")
    return 1 <= len(parts) <= 2 and all(parts) and not any(part in (".", "..") for part in parts) \
        and not model.startswith(("~", os.sep)) and "\\" not in model


def _model_file(model: str, name: str) -> str:
    """How to name a file of a model folder or Hub repo in a message."""
    from blemore_toolkit.training.model_checks import model_file

    return model_file(model, name)


def load_blemore_model(model: str, *, revision: str | None = None, trust_remote_code: bool = False,
                       strict: bool | None = None, **settings):
    """``AutoModelForVideoClassification.from_pretrained`` of a saved BLEMORE model (the classifier), with each way
    it can fail said in one line.

    A damaged ``config.json`` or weights file is named; a model whose classes are not this package's (it would
    need the code it ships) is refused unless ``trust_remote_code``. ``strict`` (default: unless ``settings``
    change the architecture) also refuses a checkpoint whose tensors do not all load as they were saved
    (``model_checks``): missing, unexpected, reshaped, stored as integers, or not finite.
    """
    from huggingface_hub.errors import StrictDataclassError
    from safetensors import SafetensorError
    from transformers import AutoModelForVideoClassification

    from blemore_toolkit.modeling import register_auto_classes
    from blemore_toolkit.training import model_checks

    strict = not settings if strict is None else strict
    model_checks.check_model_config(model, model_checks.read_json_object(model, "config.json", revision))
    register_auto_classes()  # BLEMORE configs then load with the local classes, without running shipped code
    if strict:  # reshaped tensors are reported (and refused below) rather than raised after a printed report
        settings = {"ignore_mismatched_sizes": True, **settings}
    try:
        with _quiet_transformers(strict):  # in strict mode the load report becomes this package's one line
            loaded, info = AutoModelForVideoClassification.from_pretrained(
                model, trust_remote_code=trust_remote_code, revision=revision, output_loading_info=True, **settings)
    except SafetensorError as error:
        raise blemore.BlemoreError(f"{_model_file(model, 'model.safetensors')}: damaged weights ({error}); save or "
                                   "download the model again") from None
    except OSError as error:
        raise blemore.BlemoreError(f"{model}: cannot load the model: {' '.join(str(error).split())}") from None
    except StrictDataclassError as error:
        # A config the BLEMORE checks refuse (e.g. 36 labels in id2label): their reason, not the wrapper's.
        reason = error.__cause__ if error.__cause__ is not None else error
        raise blemore.BlemoreError(f"{_model_file(model, 'config.json')}: {' '.join(str(reason).split())}") from None
    except RuntimeError as error:  # a tensor of another shape (transformers prints its report before raising)
        raise blemore.BlemoreError(f"{_model_file(model, 'model.safetensors')}: the weights do not fit the model "
                                   f"({' '.join(str(error).split())[:200]})") from None
    except (ValueError, TypeError) as error:
        unknown = re.search(r"Unrecognized configuration class <class '(?:[\w.]+\.)?(\w+)'>", str(error))
        if unknown:  # a transformers model of another kind (e.g. BertConfig): no code of its own is involved
            raise blemore.BlemoreError(f"{model}: not a BLEMORE model (its config.json is a {unknown[1]}, which "
                                       "is no video classifier); give a folder written by `blemore train` or "
                                       "`blemore heads`") from None
        if "trust_remote_code" in str(error):
            raise blemore.BlemoreError(f"{model}: is not a BLEMORE model this package can load with its own code; "
                                       "it ships code of its own, which runs only with --trust-remote-code (read "
                                       "it first)") from None
        raise blemore.BlemoreError(f"{_model_file(model, 'config.json')}: not a usable model configuration "
                                   f"({' '.join(str(error).split())[:200]})") from None
    if strict:
        model_checks.check_loading_report(model, info)
        model_checks.check_checkpoint_tensors(model, loaded, revision)
    return loaded


@contextlib.contextmanager
def _quiet_transformers(quiet: bool):
    """transformers' warnings (its multi-line load report) silenced while ``quiet``."""
    from transformers.utils import logging as transformers_logging

    level = transformers_logging.get_verbosity()
    if quiet:
        transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(level)


def load_blemore_processor(model: str, *, revision: str | None = None):
    """``BlemoreProcessor.from_pretrained``, a damaged or unusable ``processor_config.json`` named in one line."""
    from blemore_toolkit.modeling import BlemoreProcessor
    from blemore_toolkit.training import model_checks

    model_checks.check_processor_config(model, model_checks.read_json_object(model, "processor_config.json",
                                                                             revision))
    try:
        return BlemoreProcessor.from_pretrained(model, revision=revision)
    except OSError as error:
        raise blemore.BlemoreError(f"{model}: cannot load the processor: {' '.join(str(error).split())}") from None
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise blemore.BlemoreError(f"{_model_file(model, 'processor_config.json')}: not a usable processor "
                                   f"configuration ({type(error).__name__}: {' '.join(str(error).split())[:200]})"
                                   ) from None


def predict_split(model, processor, split, *, batch_size: int = 8, num_workers: int = 2,
                  progress: bool = True, faces_dir: str | None = None) -> dict:
    """Run the model over a dataset split with the Trainer; returns clip ids, probabilities and decoded outcomes.

    ``faces_dir``: a HiCMAE model's frames from aligned-face folders, one per clip (see ``training.hicmae``).
    """
    import tempfile

    import torch
    from transformers import Trainer, TrainingArguments

    with cpu_threads_beside_workers(num_workers), tempfile.TemporaryDirectory(prefix="blemore-predict-") as scratch:
        arguments = TrainingArguments(
            output_dir=scratch, per_device_eval_batch_size=batch_size, dataloader_num_workers=num_workers,
            remove_unused_columns=False, report_to="none", disable_tqdm=not progress,
            use_cpu=not torch.cuda.is_available(),
        )  # fmt: skip
        if model.config.model_type == "hicmae":
            from blemore_toolkit.training.hicmae import HicmaeCollator, hicmae_stream

            collator = HicmaeCollator()
            clips = hicmae_stream(split, processor, with_labels=False, faces_dir=faces_dir)
        else:
            collator, clips = ClipCollator(processor), clip_stream(split, processor, with_labels=False)
        trainer = Trainer(model=model, args=arguments, data_collator=collator)
        output = trainer.predict(clips)
    predictions = output.predictions
    logits = predictions[0] if isinstance(predictions, (tuple, list)) else predictions
    outcome_logits = predictions[1] if isinstance(predictions, (tuple, list)) and len(predictions) > 1 else None
    outcomes = model.decode_outcomes(logits=logits, outcome_logits=outcome_logits)
    return {
        "clip_ids": list(split["clip_id"]),
        "probabilities": emotion_probabilities(predictions),
        "outcomes": np.asarray(outcomes),
    }


def write_predictions(result: dict, output_dir: str | os.PathLike, truth=None) -> dict[str, Path]:
    """Write predictions.json, submission.zip and probabilities.csv after a strict check of the submission."""
    from blemore_toolkit.evaluation.submission import (
        check_submission,
        parse_submission,
        submission_document,
        write_submission,
    )
    from blemore_toolkit.modeling.decoding_blemore import outcomes_to_predictions

    output_dir = Path(output_dir)
    # NaN or infinite outputs (a damaged model, a broken input) decode to plausible answers: refuse them first
    check_probabilities(result["probabilities"], list(result["clip_ids"]), "the model's predictions")
    predictions = dict(zip(result["clip_ids"], outcomes_to_predictions(result["outcomes"])))
    checked = check_submission(parse_submission(submission_document(predictions), "predictions"),
                               expected=result["clip_ids"])
    checked.raise_for_problems()
    return {
        "predictions": write_submission(predictions, output_dir / "predictions.json"),
        "submission": write_submission(predictions, output_dir / "submission.zip"),
        "probabilities": write_probabilities(output_dir / "probabilities.csv", result["clip_ids"],
                                             result["probabilities"], truth),
    }


def feature_configs_of(model) -> list[str]:
    """The features configs a model on precomputed features reads, in the order its input concatenates them.

    ``blemore heads`` names a model's feature input after its configs (``"clip+wavlm"`` for early fusion of two, one
    input per config for the fusion heads); inputs and configs are kept in name order, so concatenating the configs
    in name order gives the model's ``features`` tensor in both cases.
    """
    return sorted(name for key in (model.config.feature_sizes or {}) for name in key.split("+"))


def select_feature_rows(table, config: str, split: str):
    """The rows of a ``feature_table.FeatureTable`` that make ``split`` of the dataset config ``config``."""
    parts = blemore.config_splits(config) if config in blemore.config_names() else None
    if parts is None or split not in parts:
        raise blemore.BlemoreError(f"no split {split!r} in dataset config {config!r} (configs: "
                                   f"{', '.join(blemore.config_names())})")
    folds = {int(part.removeprefix("fold")) for part in parts[split] if part != "test"}
    keep = np.isin(table.fold, sorted(folds)) & (table.split == "train")
    if "test" in parts[split]:
        keep |= table.split == "test"
    return table.rows(keep)


def predict_features(model, dataset: str, config: str = "default", split: str = "test"
                     ) -> tuple[dict, np.ndarray | None]:
    """Predictions of a model on precomputed features for a dataset split; also the true outcomes when labelled."""
    from blemore_toolkit.features.feature_table import subsampling_design
    from blemore_toolkit.features.head_training import clip_probabilities, predict_logits
    from blemore_toolkit.features.sequence_heads import head_recipe

    names = feature_configs_of(model)
    # statistics (one vector per clip) or, for a sequence head, the per-window sequences of the same configs
    recipe = head_recipe(getattr(model.config, "sequence_head", None))
    table = select_feature_rows(recipe.load(dataset, names), config, split)
    if getattr(model.config, "feature_method", "aggregation") == "subsampling":  # windows' logits averaged per clip
        design = subsampling_design(dataset, table, names)
        probabilities = clip_probabilities(predict_logits(model, design.x), design.clip, len(table.clip_ids))
    else:
        probabilities = recipe.predict(model, recipe.inputs(table, names))
    result = {"clip_ids": table.clip_ids, "probabilities": probabilities,
              "outcomes": np.asarray(model.decode_outcomes(logits=np.log(np.clip(probabilities, 1e-12, None))))}
    labelled = len(table.outcome) and (table.outcome >= 0).all()
    return result, (table.outcome if labelled else None)
