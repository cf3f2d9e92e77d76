"""What every conversion shares (blemore_toolkit/conversion): safe checkpoint loading, the rename table's refusals,
strict loading into the target model, and the all-or-nothing output folder of ``blemore convert``."""

import pickle

import pytest
import torch

from blemore import BlemoreError
from blemore_toolkit.conversion import convert_checkpoint, family_module
from blemore_toolkit.conversion.checkpoints import load_into, load_original_checkpoint, rename_state_dict


def test_a_wrapped_state_dict_is_unwrapped(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"model": {"a.weight": torch.ones(2)}, "epoch": 3}, path)
    state = load_original_checkpoint(path)
    assert list(state) == ["a.weight"] and torch.equal(state["a.weight"], torch.ones(2))


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize("content", ["missing", "text", "code", "not_tensors"])
def test_bad_checkpoints_are_one_line_naming_the_file(tmp_path, content):
    path = tmp_path / "ckpt.pth"
    if content == "text":
        path.write_text("hello")
    elif content == "code":
        path.write_bytes(pickle.dumps({"model": _Payload()}))
    elif content == "not_tensors":
        torch.save({"model": {"a": 1}}, path)
    with pytest.raises(BlemoreError) as error:
        load_original_checkpoint(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_the_rename_table_maps_drops_and_refuses():
    state = {"blocks.0.attn.w": 1, "decoder.x": 2, "head.w": 3}
    table = [(r"blocks\.(\d+)\.attn\.w", r"layer.\1.attention.weight"), (r"decoder\..*", None),
             (r"head\.w", "classifier.weight")]
    assert rename_state_dict(state, table) == {"layer.0.attention.weight": 1, "classifier.weight": 3}
    with pytest.raises(BlemoreError, match="1 weights this conversion does not know: extra.w"):
        rename_state_dict({**state, "extra.w": 4}, table)
    with pytest.raises(BlemoreError, match="two weights map to"):
        rename_state_dict({"head.w": 1, "head.v": 2}, [(r"head\.(w|v)", "classifier.weight")])


def test_loading_is_strict_about_missing_extra_and_shapes():
    model = torch.nn.Linear(3, 2)
    good = {"weight": torch.zeros(2, 3), "bias": torch.ones(2)}
    load_into(model, good)
    assert torch.equal(model.bias, torch.ones(2))
    with pytest.raises(BlemoreError, match="not in the checkpoint"):
        load_into(model, {"weight": torch.zeros(2, 3)})
    with pytest.raises(BlemoreError, match="no place for"):
        load_into(model, {**good, "extra": torch.zeros(1)})
    with pytest.raises(BlemoreError, match=r"shape \(3, 2\)"):
        load_into(model, {"weight": torch.zeros(3, 2), "bias": torch.ones(2)})


def test_unknown_families_and_existing_outputs_are_refused(tmp_path):
    with pytest.raises(BlemoreError, match="unknown conversion"):
        family_module("resnet")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(BlemoreError, match="already exists"):
        convert_checkpoint("videomaev2", tmp_path / "x.pth", out)
    assert (out / "keep.txt").read_text() == "mine"
