"""A model folder that is not what it claims (`blemore predict MODEL`, `train --init-from MODEL`): settings files
that are not objects or hold unusable values, and weights that do not all load as saved (missing, unexpected,
reshaped, cast to integers, NaN), each one line naming the folder's file; NaN predictions never become a
submission.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import blemore
from blemore_toolkit.training.predict import load_model, write_predictions


def _set(file: str, key: str, value):
    def edit(folder):
        document = json.loads((folder / file).read_text())
        document[key] = value
        (folder / file).write_text(json.dumps(document))
    return edit


def _write(file: str, text: str):
    return lambda folder: (folder / file).write_text(text)


def _tensors(change):
    def edit(folder):
        import torch  # noqa: F401  (safetensors.torch needs it)
        from safetensors.torch import load_file, save_file

        tensors = load_file(folder / "model.safetensors")
        key = sorted(k for k, v in tensors.items() if v.ndim == 2)[0]
        change(tensors, key)
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return edit


def _reshape(tensors, key):
    import torch

    tensors[key] = torch.zeros(3, 3)


CASES = {
    "config_is_a_list": (_write("config.json", "[1, 2]"), "config.json", "a JSON list"),
    "processor_config_is_a_list": (_write("processor_config.json", "[]"), "processor_config.json", "a JSON list"),
    "unknown_processor_class": (_set("processor_config.json", "processor_class", "NoSuchProcessor"),
                                "processor_config.json", "processor_class is 'NoSuchProcessor'"),
    "wrong_processor_class": (_set("processor_config.json", "processor_class", "Wav2Vec2Processor"),
                              "processor_config.json", "processor_class is 'Wav2Vec2Processor'"),
    "num_frames_text": (_set("processor_config.json", "num_frames", "abc"), "processor_config.json",
                        "num_frames is 'abc'"),
    "num_frames_zero": (_set("processor_config.json", "num_frames", 0), "processor_config.json", "num_frames is 0"),
    "threshold_text": (_set("config.json", "presence_threshold", "abc"), "config.json", "presence_threshold is 'abc'"),
    "threshold_negative": (_set("config.json", "salience_threshold", -1), "config.json", "salience_threshold is -1"),
    "threshold_above_one": (_set("config.json", "presence_threshold", 7), "config.json", "presence_threshold is 7"),
    "unknown_decoder": (_set("config.json", "decoder", "vote"), "config.json", "decoder 'vote'"),
    "tensor_reshaped": (_tensors(_reshape), "model.safetensors", "has another shape"),
    "tensor_missing": (_tensors(lambda t, k: t.pop(k)), "model.safetensors", "is missing from the checkpoint"),
    "tensor_unexpected": (_tensors(lambda t, k: t.__setitem__("extra.weight", t[k][:1].clone())),
                          "model.safetensors", "tensor extra.weight is in the checkpoint but not in the model"),
    "tensor_cast_to_integers": (_tensors(lambda t, k: t.__setitem__(k, (t[k] * 100).long())), "model.safetensors",
                                "stored as I64"),
    "tensor_nan": (_tensors(lambda t, k: t[k].fill_(float("nan"))), "model.safetensors", "holds NaN"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_bad_model_folder_is_one_line_naming_its_file(tiny_model_folder, tmp_path, capsys, prepared_dataset, name):
    edit, file, needle = CASES[name]
    folder = shutil.copytree(tiny_model_folder, tmp_path / "model")
    edit(folder)
    with pytest.raises(blemore.BlemoreError) as caught:
        load_model(str(folder))
    assert str(caught.value).startswith(str(folder / file)) and needle in str(caught.value), caught.value
    code = blemore.main(["predict", str(folder), str(prepared_dataset), "--output-dir", str(tmp_path / "out")])
    _, err = capsys.readouterr()
    lines = [line for line in err.strip().splitlines() if line.strip() and "Loading weights" not in line]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert str(folder / file) in lines[0] and needle in lines[0]
    assert not (tmp_path / "out").exists()


def test_the_intact_model_still_loads(tiny_model_folder):
    model, processor = load_model(str(tiny_model_folder))
    assert processor is not None and model.config.presence_threshold == 0.15


def test_non_finite_predictions_are_never_written(tmp_path):
    clip_ids = ["test_0001", "test_0002", "test_0003"]
    probabilities = np.full((3, 6), 1 / 6)
    probabilities[1] = np.nan
    result = {"clip_ids": clip_ids, "probabilities": probabilities, "outcomes": np.array([0, 0, 0])}
    with pytest.raises(blemore.BlemoreError, match="clip test_0002: p_ang is nan"):
        write_predictions(result, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    result["probabilities"] = np.full((3, 6), 1 / 6)
    assert set(write_predictions(result, tmp_path / "out")) == {"predictions", "submission", "probabilities"}
