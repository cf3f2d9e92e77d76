"""Reliability of what the commands write and publish: a full disk or a read-only dataset is one line and leaves no
half file; zip member names stay plain; text from the data reaches cards escaped and without local paths; secrets in
an endpoint URL are never echoed.

Each test reproduces one failure of an adversarial round.
"""

import json
import os
import resource
import shutil
import signal
import subprocess
import zipfile
from pathlib import Path

import pytest
from test_reliability_download import copy_download, one_line_error, run_cli, small_download

import blemore
from blemore_toolkit.evaluation import submission

PREDICTIONS = {"predictions": {"test_0001.mov": [{"emotion": "hap", "salience": 100.0}],
                               "test_0002.mov": [{"emotion": "ang", "salience": 70.0},
                                                 {"emotion": "hap", "salience": 30.0}]}}


@pytest.fixture
def predictions(tmp_path):
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps(PREDICTIONS))
    return path


def _limit_file_size(limit: int):
    """A file size limit stands in for a full disk: writes past it fail with EFBIG, as ENOSPC would."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


# --- 14. full disk, read-only dataset -------------------------------------------------------------------------------


def test_zip_on_a_full_disk_is_one_line_and_leaves_no_empty_zip(predictions, tmp_path):
    out = tmp_path / "upload.zip"
    result = run_cli("zip", predictions, "-o", out, preexec_fn=_limit_file_size(100))
    one_line_error(result, "upload.zip", "cannot write", "File too large")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["predictions.json"]


def test_zip_on_a_full_disk_keeps_the_previous_zip(predictions, tmp_path):
    out = tmp_path / "upload.zip"
    out.write_bytes(b"the previous upload")
    one_line_error(run_cli("zip", predictions, "-o", out, preexec_fn=_limit_file_size(100)), "cannot write")
    assert out.read_bytes() == b"the previous upload"


def test_report_on_a_full_disk_is_one_line_and_every_file_left_is_whole(tmp_path):
    from blemore_toolkit.evaluation.probabilities import write_probabilities

    clips = [c for c, e in blemore.load_manifest().items() if e.split == "train" and e.fold == 1][:60]
    probabilities = [[1 / 6] * 6 for _ in clips]
    write_probabilities(tmp_path / "probabilities.csv", clips, probabilities)
    out = tmp_path / "report"
    result = run_cli("report", tmp_path / "probabilities.csv", "-r", blemore.reference_path("blemore_manifest.csv"),
                     "--split", "fold1", "-o", out, "--thresholds", "0.15", "0.2", "--resamples", "20",
                     preexec_fn=_limit_file_size(20_000))
    one_line_error(result, "cannot write the report", "File too large")
    for path in out.iterdir():
        assert not path.name.startswith("."), f"a partial file was left: {path.name}"
        if path.suffix == ".png":  # a whole PNG ends with its IEND chunk
            assert path.read_bytes().endswith(b"IEND\xaeB`\x82"), path.name


def _read_only_bind(folder: Path):
    """Run a command with ``folder`` mounted read-only (a user and mount namespace: no root needed, nothing global)."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        pytest.skip("no unshare -rm here to mount a folder read-only")
    return ["unshare", "-rm", "sh", "-c", 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"',
            str(folder)]


def test_features_on_a_read_only_dataset_is_refused_before_the_encoder_loads(prepared_dataset, tmp_path):
    dataset = tmp_path / "blemore"
    shutil.copytree(prepared_dataset, dataset)
    from test_reliability_download import BLEMORE_CLI

    command = [*_read_only_bind(dataset), *BLEMORE_CLI, "features", str(dataset), "--encoder",
               str(tmp_path / "no-such-encoder"), "--local-files-only", "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True)
    line = one_line_error(result, str(dataset), "cannot write here", "Read-only file system")
    assert "no-such-encoder" not in line  # refused before the encoder was looked for


def test_synth_into_a_parent_it_cannot_write_is_one_line(tmp_path):
    from test_reliability_overwrite import SYNTH_SMALL

    (tmp_path / "file").write_text("mine")
    one_line_error(run_cli("synth", tmp_path / "file" / "raw", *SYNTH_SMALL), "file")
    assert (tmp_path / "file").read_text() == "mine"


# --- 17. zip member names -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("member, needle", [
    ("../../evil.json", "leaving the folder"),
    ("/etc/evil.json", "absolute"),
    ("C:evil.json", "absolute"),
    ("results/predictions.json", "folders"),
    ("notes.txt", "not a .json file name"),
    (".hidden.json", "not a .json file name"),
])
def test_zip_refuses_a_member_name_that_is_no_plain_json_name(predictions, tmp_path, member, needle):
    out = tmp_path / "upload.zip"
    one_line_error(run_cli("zip", predictions, "-o", out, "--member", member), "--member", needle)
    assert not out.exists()


@pytest.mark.parametrize("member", ["../../evil.json", "/abs/evil.json", "a/../../evil.json"])
def test_validate_refuses_a_zip_whose_member_escapes_the_folder(tmp_path, member):
    path = tmp_path / "upload.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, json.dumps(PREDICTIONS))
    with pytest.raises(blemore.BlemoreError, match=r"absolute path or leaves the folder"):
        submission.read_submission(path)


def test_a_member_inside_a_folder_is_still_read_by_validate(tmp_path):
    path = tmp_path / "upload.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("results/predictions.json", json.dumps(PREDICTIONS))
    assert len(submission.read_submission(path).clips) == 2


def test_what_zip_writes_validate_accepts(predictions, tmp_path):
    out = tmp_path / "upload.zip"
    result = run_cli("zip", predictions, "-o", out, "--member", "my_predictions.json")
    assert result.returncode == 0, result.stderr
    assert run_cli("validate", out).returncode == 0


# --- 16. text from the data reaches the cards escaped, without local paths ------------------------------------------


def test_markdown_text_shows_html_and_markdown_as_text():
    from blemore_toolkit.data.card import markdown_text

    assert markdown_text("<img src=x onerror=alert(1)>") == "&lt;img src=x onerror=alert\\(1\\)&gt;"
    assert markdown_text("[click](http://evil) *bold* `code` a|b") == (
        "\\[click\\]\\(http://evil\\) \\*bold\\* \\`code\\` a\\|b")
    assert markdown_text("two\nlines") == "two lines"


def test_the_dataset_card_escapes_csv_text_and_records_no_local_path(tmp_path):
    from blemore_toolkit.data.prepare import prepare_dataset

    raw = copy_download(small_download(tmp_path / "source"), tmp_path / "raw")
    (raw / "notes <img src=x onerror=alert(1)>.csv").write_text("name,<script>alert(1)</script>\nx,y\n")
    with open(raw / "metadata.csv", "w") as f:  # a row whose clip has no video: its name lands in the notes
        f.write("filename,video_id\n<img src=y onerror=alert(2)>,A102\n")
    out = tmp_path / "blemore"
    prepare_dataset(raw, out, progress=False)
    card = (out / "README.md").read_text()
    body = card.split("---\n", 2)[2]
    assert "<img" not in body and "<script" not in body
    assert "&lt;img src=x onerror=alert\\(1\\)&gt;" in body and "&lt;script&gt;" in body
    assert str(tmp_path) not in card and "RAW/notes" in body


def test_the_model_card_names_local_folders_only_and_refuses_a_bad_dataset_repo(tmp_path):
    from blemore_toolkit.training.model_card import training_paragraph

    summary = {"dataset": str(tmp_path / "private" / "blemore"), "fold": "all", "thresholds_source": "default",
               "model": {"init_from": str(tmp_path / "home" / "me" / "runs" / "model")}}
    text = training_paragraph(summary)
    assert str(tmp_path) not in text and "`blemore`" in text and "`model`" in text
    assert "[me/blemore](https://huggingface.co/datasets/me/blemore)" in training_paragraph(summary, "me/blemore")
    with pytest.raises(blemore.BlemoreError, match="--dataset-repo .*not a Hub repo id"):
        training_paragraph(summary, "x](http://evil) <img src=x>")


def test_train_refuses_a_bad_dataset_repo_before_training(tmp_path):
    one_line_error(run_cli("train", tmp_path / "no-dataset", "--dataset-repo", "a b](http://evil)"),
                   "--dataset-repo", "not a Hub repo id")


# --- 18. smaller ones -----------------------------------------------------------------------------------------------


def test_push_errors_never_echo_credentials_in_the_endpoint(hub, tmp_path, capsys):
    from test_hub import make_dataset_folder

    folder = make_dataset_folder(tmp_path / "blemore")
    capsys.readouterr()
    endpoint = hub.url.replace("://", "://me:hf_SECRETTOKEN@") + "/nowhere"
    assert blemore.main(["push", str(folder), "me/blemore-tiny", "--endpoint", endpoint]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "hf_SECRETTOKEN" not in error and "***@" in error, error


def test_a_transformers_model_of_another_kind_is_said_to_be_one(tmp_path):
    from transformers import BertConfig

    from blemore_toolkit.training.predict import load_blemore_model

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8).save_pretrained(
        tmp_path / "bert")
    for trust in (False, True):
        with pytest.raises(blemore.BlemoreError) as error:
            load_blemore_model(str(tmp_path / "bert"), trust_remote_code=trust)
        assert "not a BLEMORE model" in str(error.value) and "BertConfig" in str(error.value)
        assert "code of its own" not in str(error.value)


def test_predict_loads_only_its_split_into_the_cache(prepared_dataset, tmp_path, monkeypatch):
    import datasets

    from blemore_toolkit.data.loading import cache_copy, load_split

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    test = load_split(str(prepared_dataset), "default", "test", only_this_split=True)
    where, size = cache_copy(test)
    assert Path(where).is_relative_to(tmp_path / "cache") and size > 0
    copied = sum(os.path.getsize(f["filename"]) for f in test.cache_files)
    cached = sum(path.stat().st_size for path in (tmp_path / "cache").rglob("*.arrow"))
    assert cached == copied  # the train split was not copied into the cache
    full = load_split(str(prepared_dataset), "default", "test")
    assert test.features == full.features and test["clip_id"] == full["clip_id"]
    assert sum(path.stat().st_size for path in (tmp_path / "cache").rglob("*.arrow")) > 2 * cached  # train too
