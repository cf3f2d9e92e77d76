"""``blemore predict`` on a model that is not there or that BLEMORE refuses: one line that says why."""

import json

import blemore


def test_a_missing_model_folder_is_named_as_such(tmp_path, capsys):
    missing = tmp_path / "runs" / "train" / "final" / "model"
    assert blemore.main(["predict", str(missing), str(tmp_path / "blemore")]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and str(missing) in error and "no such folder" in error
    assert "Repo id" not in error


def test_a_config_with_the_36_outcomes_as_labels_is_one_line_with_blemores_reason(tmp_path, capsys):
    from blemore_toolkit.training.tiny import tiny_model

    folder = tmp_path / "model"
    tiny_model().save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {str(i): name for i, name in enumerate(blemore.OUTCOME_NAMES)}
    config["label2id"] = {name: i for i, name in enumerate(blemore.OUTCOME_NAMES)}
    (folder / "config.json").write_text(json.dumps(config))
    capsys.readouterr()  # saving's progress bar
    assert blemore.main(["predict", str(folder), str(tmp_path / "blemore")]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1, error
    assert str(folder / "config.json") in error and "36 labels are the outcomes" in error
    assert "objective='outcome'" in error and "StrictDataclass" not in error and "validator" not in error
