"""Checks of a saved BLEMORE model (folder or Hub repo) around loading it, each failure one line naming the file.

Before loading: ``config.json`` and ``processor_config.json`` must be JSON objects whose decoding thresholds,
decoder, processor class, frame count and audio cut are values the model can run with. After loading: every tensor
the model has must have come from the checkpoint (none missing, unexpected or of another shape: transformers'
load report), stored as a floating-point tensor where the model's is one (a weight cast to integers loads without
complaint, rounded), and finite (a NaN weight makes every prediction NaN, which decodes to a plausible answer).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import blemore

#: Floating-point dtypes as safetensors names them.
_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64", "F8_E4M3", "F8_E5M2")
DECODERS = ("thresholds", "expected_score")


def model_file(model: str, name: str) -> str:
    """How to name a file of a model folder or Hub repo in a message."""
    return str(Path(model) / name) if Path(model).exists() else f"{model} ({name})"


def read_json_object(model: str, name: str, revision: str | None = None) -> dict | None:
    """A model file's JSON object (None when the folder or repo has no such file); ``BlemoreError`` otherwise."""
    from transformers.utils import cached_file

    try:
        path = cached_file(model, name, revision=revision, _raise_exceptions_for_missing_entries=False)
    except OSError:
        return None  # not a folder or reachable repo: from_pretrained says so in its own words
    if path is None:
        return None
    where = model_file(model, name)
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise blemore.BlemoreError(f"{where}: not UTF-8 text ({error.reason})") from None
    except json.JSONDecodeError as error:
        raise blemore.BlemoreError(f"{where}: not valid JSON ({error.msg} at line {error.lineno}, column "
                                   f"{error.colno})") from None
    if not isinstance(document, dict):
        raise blemore.BlemoreError(f"{where}: a JSON {type(document).__name__} where an object of settings is "
                                   "expected")
    return document


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_model_config(model: str, config: dict | None) -> None:
    """Decoder and thresholds of a BLEMORE ``config.json`` (only BLEMORE configs: others are refused later)."""
    if config is None or config.get("model_type") != "blemore":
        return
    where = model_file(model, "config.json")
    for key in ("decoding_rule", "decoder"):  # ``decoder``: the decoding rule's name in older config.json files
        rule = config.get(key, "thresholds")
        if rule not in DECODERS:
            raise blemore.BlemoreError(f"{where}: {key} {rule!r} is not one of {', '.join(DECODERS)}")
    for key in ("presence_threshold", "salience_threshold"):
        if key in config and not (_is_number(config[key]) and 0.0 <= config[key] <= 1.0):
            raise blemore.BlemoreError(f"{where}: {key} is {config[key]!r}; a threshold is a number from 0 to 1")
    for key in ("blend_fraction", "outcome_temperature"):
        if key in config and config[key] is not None and not (_is_number(config[key]) and config[key] > 0):
            raise blemore.BlemoreError(f"{where}: {key} is {config[key]!r}; expected a positive number")


def check_processor_config(model: str, config: dict | None) -> None:
    """Class, frame count and audio cut of a ``processor_config.json``."""
    if config is None:
        return
    where = model_file(model, "processor_config.json")
    kind = config.get("processor_class", "BlemoreProcessor")
    if kind != "BlemoreProcessor":
        raise blemore.BlemoreError(f"{where}: processor_class is {kind!r}; a BLEMORE model's processor is "
                                   "BlemoreProcessor")
    frames = config.get("num_frames", 16)
    if not (isinstance(frames, int) and not isinstance(frames, bool) and frames >= 1):
        raise blemore.BlemoreError(f"{where}: num_frames is {frames!r}; expected a whole number of at least 1")
    seconds = config.get("max_audio_seconds")
    if seconds is not None and not (_is_number(seconds) and seconds > 0):
        raise blemore.BlemoreError(f"{where}: max_audio_seconds is {seconds!r}; expected a positive number or null")
    for part in ("video_processor", "feature_extractor"):
        if config.get(part) is not None and not isinstance(config[part], dict):
            raise blemore.BlemoreError(f"{where}: {part} is a {type(config[part]).__name__}, not an object of "
                                       "settings")


def check_loading_report(model: str, info: dict) -> None:
    """Every tensor came from the checkpoint: nothing missing, unexpected or reshaped (transformers' report)."""
    for key, what in (("missing_keys", "is missing from the checkpoint (it would be random)"),
                      ("unexpected_keys", "is in the checkpoint but not in the model"),
                      ("mismatched_keys", "has another shape in the checkpoint than in the model")):
        found = sorted(info.get(key) or [], key=str)
        if found:
            first = found[0]
            if isinstance(first, (tuple, list)):  # (name, shape in the checkpoint, shape in the model)
                first = f"{first[0]} ({' vs '.join(str(tuple(shape)) for shape in first[1:])})"
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            raise blemore.BlemoreError(f"{model_file(model, 'model.safetensors')}: tensor {first} {what}{more}; "
                                       "save or download the model again")


def _checkpoint_files(model: str, revision: str | None) -> list[Path]:
    """The safetensors files of a model folder or (cached) Hub repo, sharded or not."""
    from transformers.utils import cached_file

    single = cached_file(model, "model.safetensors", revision=revision, _raise_exceptions_for_missing_entries=False)
    if single is not None:
        return [Path(single)]
    index = cached_file(model, "model.safetensors.index.json", revision=revision,
                        _raise_exceptions_for_missing_entries=False)
    if index is None:
        return []
    shards = sorted(set(json.loads(Path(index).read_text()).get("weight_map", {}).values()))
    return [Path(index).parent / shard for shard in shards]


def check_checkpoint_tensors(model: str, loaded, revision: str | None = None) -> None:
    """Stored dtypes floating where the model's parameter is, and every loaded floating tensor finite."""
    import torch
    from safetensors import safe_open

    state = loaded.state_dict()
    for path in _checkpoint_files(model, revision):
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                stored = f.get_slice(key).get_dtype()
                target = state.get(key)
                if target is not None and target.is_floating_point() and stored not in _FLOAT_DTYPES:
                    raise blemore.BlemoreError(f"{model_file(model, path.name)}: tensor {key} is stored as {stored}, "
                                               f"not a floating-point type ({target.dtype} in the model); save or "
                                               "download the model again")
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise blemore.BlemoreError(f"{model_file(model, 'model.safetensors')}: tensor {key} holds NaN or "
                                       "infinite values; the model cannot predict (save or train it again)")


__all__ = ["check_checkpoint_tensors", "check_loading_report", "check_model_config", "check_processor_config",
           "model_file", "read_json_object"]
