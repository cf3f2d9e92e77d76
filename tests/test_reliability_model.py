"""Reliability at the model-folder boundary (`blemore predict MODEL`, `blemore train --init-from MODEL`): the code a
model folder or repo ships never runs unless asked (`--trust-remote-code`), and a damaged file is one line naming it.
"""

import json
import shutil
from pathlib import Path

import pytest

import blemore
from blemore_toolkit.training.predict import load_model
from blemore_toolkit.training.train import TrainSettings, build_model

#: Appended to the code a saved model ships: if it ever runs, the file appears.
TRIPWIRE = '\nimport pathlib as _p\n_p.Path({marker!r}).write_text("the shipped code ran")\n'


@pytest.fixture
def model_copy(tiny_model_folder, tmp_path):
    return shutil.copytree(tiny_model_folder, tmp_path / "model")


def arm_tripwire(folder: Path, marker: Path, foreign: bool = False) -> None:
    """Make the folder's shipped modelling code leave ``marker`` when run; ``foreign``: a model_type this package
    does not know, so only the shipped code could load it."""
    for name in ("modeling_blemore.py", "configuration_blemore.py"):
        with open(folder / name, "a") as f:
            f.write(TRIPWIRE.format(marker=str(marker)))
    if foreign:
        config = json.loads((folder / "config.json").read_text())
        config["model_type"] = "someone_elses_model"
        (folder / "config.json").write_text(json.dumps(config))


def one_line_cli_error(capsys, argv, *needles):
    code = blemore.main([str(a) for a in argv])
    _, err = capsys.readouterr()
    assert code == 1, err
    lines = [line for line in err.strip().splitlines() if "Loading weights" not in line]  # transformers' progress bar
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert str(needle) in lines[0], lines[0]
    return lines[0]


# --- remote code only when asked -----------------------------------------------------------------------------------


def test_a_blemore_model_loads_with_the_local_classes_and_its_shipped_code_does_not_run(model_copy, tmp_path):
    marker = tmp_path / "ran"
    arm_tripwire(model_copy, marker)
    model, processor = load_model(str(model_copy))
    assert type(model).__module__ == "blemore_toolkit.modeling.modeling_blemore" and processor is not None
    model, _ = build_model(TrainSettings(init_from=str(model_copy)))
    assert type(model).__module__ == "blemore_toolkit.modeling.modeling_blemore"
    assert not marker.exists()


def test_a_model_that_needs_its_own_code_is_refused_without_the_flag(model_copy, tmp_path, capsys, prepared_dataset):
    marker = tmp_path / "ran"
    arm_tripwire(model_copy, marker, foreign=True)
    with pytest.raises(blemore.BlemoreError, match="--trust-remote-code"):
        load_model(str(model_copy))
    with pytest.raises(blemore.BlemoreError, match="--trust-remote-code"):
        build_model(TrainSettings(init_from=str(model_copy)))
    one_line_cli_error(capsys, ["predict", model_copy, tmp_path / "dataset"], "--trust-remote-code")
    one_line_cli_error(capsys, ["train", prepared_dataset, "--init-from", model_copy, "--fold", "none",
                                "--output-dir", tmp_path / "run"], "--trust-remote-code")
    assert not marker.exists()


def test_the_flag_lets_the_shipped_code_run(model_copy, tmp_path):
    """--trust-remote-code is threaded through to transformers: the shipped code then runs (and loads the model)."""
    marker = tmp_path / "ran"
    arm_tripwire(model_copy, marker, foreign=True)
    model, _ = load_model(str(model_copy), trust_remote_code=True)
    assert marker.exists() and type(model).__module__ != "blemore_toolkit.modeling.modeling_blemore"


def test_both_commands_offer_the_flag_off_by_default():
    from blemore_toolkit import cli

    for command in ("predict", "train"):
        import argparse

        parser = argparse.ArgumentParser()
        getattr(cli, f"add_{command}_arguments")(parser)
        required = ["MODEL", "DATASET"] if command == "predict" else ["DATASET"]
        assert parser.parse_args(required).trust_remote_code is False
        assert parser.parse_args([*required, "--trust-remote-code"]).trust_remote_code is True


# --- damaged files: one line naming the file -----------------------------------------------------------------------


def test_truncated_weights_are_one_line_naming_the_file(model_copy, tmp_path, capsys, prepared_dataset):
    weights = model_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(blemore.BlemoreError, match=r"model.safetensors: damaged weights"):
        load_model(str(model_copy))
    one_line_cli_error(capsys, ["predict", model_copy, tmp_path / "dataset"], str(weights), "damaged weights")
    one_line_cli_error(capsys, ["train", prepared_dataset, "--init-from", model_copy, "--fold", "none",
                                "--output-dir", tmp_path / "run"], str(weights))


def test_an_invalid_processor_config_is_one_line_naming_the_file(model_copy, tmp_path, capsys):
    (model_copy / "processor_config.json").write_text('{"video_processor": ')
    one_line_cli_error(capsys, ["predict", model_copy, tmp_path / "dataset"],
                       str(model_copy / "processor_config.json"), "not valid JSON")
    with pytest.raises(blemore.BlemoreError, match="processor_config.json: not valid JSON"):
        build_model(TrainSettings(init_from=str(model_copy)))


def test_an_invalid_config_is_one_line_naming_the_folder(model_copy, tmp_path, capsys):
    (model_copy / "config.json").write_text("{not json")
    one_line_cli_error(capsys, ["predict", model_copy, tmp_path / "dataset"], str(model_copy), "config")


def test_a_folder_without_a_model_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    one_line_cli_error(capsys, ["predict", tmp_path / "empty", tmp_path / "dataset"], "no config.json")
