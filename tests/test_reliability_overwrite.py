"""Reliability of what the data commands replace or write: `prepare --overwrite` deletes only what prepare wrote,
never writes through a link, keeps (or refuses to drop) features configs; `synth --overwrite` replaces only a
synthetic download; `push` publishes no link's target.

Each test reproduces one failure of an adversarial round and checks that the user's files are left as they were.
"""

import json
import os
from pathlib import Path

import datasets
import pytest
from test_reliability_download import copy_download, one_line_error, run_cli, small_download, snapshot

import blemore
from blemore_toolkit.data.prepare import PREPARED_MARKER, prepare_dataset


@pytest.fixture(scope="module")
def download(tmp_path_factory):
    return small_download(tmp_path_factory.mktemp("download") / "raw")


def prepare(download, out, *extra):
    return run_cli("prepare", download, out, "--quiet", "--workers", "1", *extra)


# --- 1. --overwrite replaces only a folder that carries prepare's marker and nothing else ---------------------------


def test_overwrite_refuses_a_project_that_merely_has_a_readme_and_a_data_folder(download, tmp_path):
    project = tmp_path / "proj"
    for sub in ("data", "src", ".git"):
        (project / sub).mkdir(parents=True)
    (project / "README.md").write_text("x")
    (project / "src" / "main.py").write_text("print('years of work')")
    (project / ".git" / "HEAD").write_text("ref: refs/heads/main")
    before = snapshot(tmp_path)
    one_line_error(prepare(download, project, "--overwrite"), "proj", PREPARED_MARKER, "rm -r")
    assert snapshot(tmp_path) == before


def test_overwrite_refuses_a_prepared_folder_holding_files_prepare_did_not_write(download, tmp_path):
    out = tmp_path / "blemore"
    prepare_dataset(download, out, progress=False)
    (out / "notes.txt").write_text("mine")
    (out / "data" / "my_analysis.csv").write_text("mine too")
    before = snapshot(tmp_path)
    one_line_error(prepare(download, out, "--overwrite"), "notes.txt", "prepare did not write")
    (out / "notes.txt").unlink()
    one_line_error(prepare(download, out, "--overwrite"), "data/my_analysis.csv", "prepare did not write")
    assert (out / "data" / "my_analysis.csv").read_text() == "mine too"
    del before["blemore/notes.txt"]
    assert snapshot(tmp_path) == before


def test_overwrite_replaces_a_folder_prepare_marked(download, tmp_path):
    out = tmp_path / "blemore"
    prepare_dataset(download, out, progress=False)
    marker = json.loads((out / PREPARED_MARKER).read_text())
    assert marker["generator"] == "blemore prepare" and marker["shards"]
    result = prepare(download, out, "--overwrite")
    assert result.returncode == 0, result.stderr
    assert len(datasets.load_dataset(str(out), split="train")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blemore"]  # no staging, lock or replaced folder left


def test_a_marker_that_is_not_prepares_does_not_make_a_folder_replaceable(download, tmp_path):
    out = tmp_path / "blemore"
    (out / "data").mkdir(parents=True)
    (out / "README.md").write_text("mine")
    (out / PREPARED_MARKER).write_text("anything")
    one_line_error(prepare(download, out, "--overwrite"), PREPARED_MARKER)
    assert (out / "README.md").read_text() == "mine"


# --- 2. siblings: only names prepare makes itself ------------------------------------------------------------------


def test_overwrite_keeps_a_users_folder_named_like_the_old_replaced_sibling(download, tmp_path):
    out = tmp_path / "blemore"
    prepare_dataset(download, out, progress=False)
    mine = tmp_path / ".blemore.replaced"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    assert prepare(download, out, "--overwrite").returncode == 0
    assert (mine / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".blemore.replaced", "blemore"]


def test_a_users_file_at_the_lock_name_is_refused_and_kept(download, tmp_path):
    (tmp_path / ".blemore.lock").write_text("my notes")
    one_line_error(prepare(download, tmp_path / "blemore"), ".blemore.lock", "prepare did not write")
    assert (tmp_path / ".blemore.lock").read_text() == "my notes"
    assert not (tmp_path / "blemore").exists()


# --- 3. no file prepare writes follows a link -----------------------------------------------------------------------


def _leftover_staging(tmp_path: Path) -> Path:
    staging = tmp_path / ".blemore.incomplete"
    staging.mkdir(mode=0o700)
    (staging / ".blemore-prepare-staging").write_text("format=1\n")
    (staging / "data").mkdir()
    (staging / ".done").mkdir()
    return staging


def test_a_link_at_the_staging_readme_is_replaced_not_written_through(download, tmp_path):
    victim = tmp_path / "elsewhere" / "victim.md"
    victim.parent.mkdir()
    victim.write_text("not ours")
    staging = _leftover_staging(tmp_path)
    (staging / "README.md").symlink_to(victim)
    (staging / PREPARED_MARKER).symlink_to(tmp_path / "elsewhere" / "marker")
    assert prepare(download, tmp_path / "blemore").returncode == 0
    assert victim.read_text() == "not ours"
    assert sorted(p.name for p in victim.parent.iterdir()) == ["victim.md"]
    assert not (tmp_path / "blemore" / "README.md").is_symlink()
    assert len(datasets.load_dataset(str(tmp_path / "blemore"), split="train")) == 2


def test_links_at_a_shard_partial_and_done_file_are_not_written_through(download, tmp_path):
    from blemore_toolkit.data.prepare import ShardPlan, write_shard

    victim = tmp_path / "victim"
    victim.write_text("not ours")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    scan = blemore.scan_download(download)
    plan = ShardPlan("fold1-00000-of-00001", tuple(scan.clips[:1]))
    (data_dir / f".{plan.name}.{os.getpid()}.partial").symlink_to(victim)
    write_shard(plan, data_dir)
    assert victim.read_text() == "not ours"
    assert (data_dir / f"{plan.name}.parquet").stat().st_size > 1000

    (tmp_path / "again").mkdir()
    staging = _leftover_staging(tmp_path / "again")
    done_target = tmp_path / "done_victim"
    done_target.write_text("not ours")
    (staging / ".done" / "fold1-00000-of-00001").symlink_to(done_target)
    assert prepare(download, tmp_path / "again" / "blemore").returncode == 0
    assert done_target.read_text() == "not ours"


# --- 4. features configs are not dropped silently ------------------------------------------------------------------


def _add_features_config(out: Path, name: str = "enc") -> None:
    """A features config as `blemore features` stores it: files under features/NAME and a config in the card."""
    from blemore_toolkit.data.card import join_card, split_card

    folder = out / "features" / name
    folder.mkdir(parents=True)
    (folder / "provenance.json").write_text('{"encoder": "hours of GPU work"}')
    (folder / "fold1-00000-of-00001.parquet").write_bytes(b"PAR1 stand-in for features PAR1")
    metadata, body = split_card((out / "README.md").read_text(), out / "README.md")
    metadata["configs"].append({"config_name": name, "data_files": [
        {"split": "train", "path": [f"features/{name}/fold1-*.parquet"]}]})
    metadata["dataset_info"].append({"config_name": name, "features": [], "splits": []})
    (out / "README.md").write_text(join_card(metadata, body))


def test_features_configs_are_carried_over_when_the_clips_are_unchanged(download, tmp_path):
    out = tmp_path / "blemore"
    prepare_dataset(download, out, progress=False)
    _add_features_config(out)
    result = prepare(download, out, "--overwrite")
    assert result.returncode == 0, result.stderr
    assert "features configs kept" in result.stderr and "enc" in result.stderr
    assert (out / "features" / "enc" / "provenance.json").read_text() == '{"encoder": "hours of GPU work"}'
    card = (out / "README.md").read_text()
    assert "config_name: enc" in card


def test_features_configs_of_changed_clips_are_refused_unless_dropped(download, tmp_path):
    raw = copy_download(download, tmp_path / "raw")
    out = tmp_path / "blemore"
    prepare_dataset(raw, out, progress=False)
    _add_features_config(out)
    clip = raw / "clips" / "A102_ang_int1_ver1.mov"
    os.utime(clip, ns=(clip.stat().st_atime_ns, clip.stat().st_mtime_ns + 10**9))  # a clip changed since
    before = snapshot(out)
    one_line_error(prepare(raw, out, "--overwrite"), "features configs (enc)", "--drop-features")
    assert snapshot(out) == before
    result = prepare(raw, out, "--overwrite", "--drop-features")
    assert result.returncode == 0, result.stderr
    assert "deleted (--drop-features): enc" in result.stderr
    assert not (out / "features").exists() and "config_name: enc" not in (out / "README.md").read_text()


# --- 18. a name too long for the hidden siblings --------------------------------------------------------------------


def test_a_name_too_long_for_the_staging_sibling_blames_the_name(download, tmp_path):
    out = tmp_path / ("b" * 250)
    line = one_line_error(prepare(download, out), "name of OUT", "at most")
    assert "cannot write here" not in line
    assert list(tmp_path.iterdir()) == []


# --- 5. synth --overwrite replaces only a synthetic download ------------------------------------------------------


SYNTH_SMALL = ["--actors-per-fold", "1", "--test-actors", "0", "--width", "32", "--height", "16", "--durations",
               "0.2", "0.3", "--quiet"]


def test_synth_overwrite_refuses_a_folder_whose_synthetic_json_synth_did_not_write(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "synthetic.json").write_text('{"my": "experiment"}')
    (mine / "results.csv").write_text("years of work")
    before = snapshot(tmp_path)
    one_line_error(run_cli("synth", mine, "--overwrite", *SYNTH_SMALL), "not written by blemore synth")
    assert snapshot(tmp_path) == before


def test_synth_overwrite_keeps_a_synthetic_download_with_files_added(tmp_path):
    raw = tmp_path / "raw"
    assert run_cli("synth", raw, *SYNTH_SMALL).returncode == 0
    (raw / "train" / "my_notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    one_line_error(run_cli("synth", raw, "--overwrite", *SYNTH_SMALL), "train/my_notes.txt")
    assert snapshot(tmp_path) == before
    (raw / "train" / "my_notes.txt").unlink()
    result = run_cli("synth", raw, "--overwrite", *SYNTH_SMALL)  # a synthetic download, as synth wrote it
    assert result.returncode == 0, result.stderr


def test_synth_overwrite_through_a_symlink_is_one_line_and_deletes_nothing(tmp_path):
    raw = tmp_path / "raw"
    assert run_cli("synth", raw, *SYNTH_SMALL).returncode == 0
    (tmp_path / "alias").symlink_to(raw)
    before = snapshot(tmp_path)
    one_line_error(run_cli("synth", tmp_path / "alias", "--overwrite", *SYNTH_SMALL), "symlink")
    assert snapshot(tmp_path) == before


def test_synth_refuses_to_replace_a_file_at_the_answer_key_path(tmp_path):
    (tmp_path / "raw_test_answer_key.csv").write_text("my own answer key")
    one_line_error(run_cli("synth", tmp_path / "raw", *SYNTH_SMALL), "raw_test_answer_key.csv", "--answer-key")
    assert (tmp_path / "raw_test_answer_key.csv").read_text() == "my own answer key"
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize("rate", ["0", "1", "7999"])
def test_synth_refuses_audio_rates_that_carry_no_label_before_writing_anything(tmp_path, rate):
    one_line_error(run_cli("synth", tmp_path / "raw", "--audio-rate", rate, *SYNTH_SMALL), f"--audio-rate {rate}")
    assert list(tmp_path.iterdir()) == []


# --- 6. push publishes no link's target -----------------------------------------------------------------------------


def test_push_refuses_a_symlinked_file_in_the_dataset_folder(tmp_path):
    from test_hub import make_dataset_folder

    from blemore_toolkit.data.hub import check_dataset_folder, check_model_folder

    folder = make_dataset_folder(tmp_path / "blemore")
    secret = tmp_path / "secret_token.txt"
    secret.write_text("hf_secret")
    (folder / "data" / "notes.txt").symlink_to(secret)
    with pytest.raises(blemore.BlemoreError, match="notes.txt: is a symlink"):
        check_dataset_folder(folder)
    (folder / "data" / "notes.txt").unlink()
    (folder / "extra").symlink_to(tmp_path, target_is_directory=True)  # a linked folder: not walked, refused
    with pytest.raises(blemore.BlemoreError, match="extra: is a symlink"):
        check_dataset_folder(folder)
    (folder / "extra").unlink()
    readme = folder / "README.md"
    moved = tmp_path / "README.md"
    readme.rename(moved)
    readme.symlink_to(moved)
    with pytest.raises(blemore.BlemoreError, match="README.md: is a symlink"):
        check_dataset_folder(folder)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").symlink_to(secret)
    with pytest.raises(blemore.BlemoreError, match="config.json: is a symlink"):
        check_model_folder(model)


def test_push_cli_refuses_a_link_before_any_upload(hub, tmp_path, capsys):
    from test_hub import make_dataset_folder

    folder = make_dataset_folder(tmp_path / "blemore")
    (tmp_path / "id_rsa").write_text("PRIVATE KEY")
    (folder / "key").symlink_to(tmp_path / "id_rsa")
    capsys.readouterr()  # what making the folder printed
    assert blemore.main(["push", str(folder), "me/blemore-tiny", "--endpoint", hub.url]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "key: is a symlink" in error, error
    assert hub.requests == []
