"""Reliability at the prepared-folder boundary (what `blemore prepare` wrote, as `train`, `predict`, `score` and
`validate --against` read it): a folder that lost or changed a shard, or lacks what a command needs, is one line
naming the shard or what is missing, never a traceback from `datasets` that names no file."""

import shutil
import subprocess
import sys

import pytest

import blemore
from blemore_toolkit.data.loading import check_against_card, load_split
from blemore_toolkit.data.prepare import prepare_dataset

BLEMORE_CLI = [sys.executable, "-c", "import sys, blemore; sys.exit(blemore.main())"]


def run_cli(*args, **kwargs):
    return subprocess.run([*BLEMORE_CLI, *map(str, args)], capture_output=True, text=True, **kwargs)


def one_line_error(result, *needles):
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert str(needle) in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def folder(prepared_dataset, tmp_path):
    """A copy of the session's prepared folder that a test may damage."""
    return shutil.copytree(prepared_dataset, tmp_path / "blemore")


def test_an_intact_folder_passes_the_check_and_loads(folder):
    check_against_card(folder)
    assert len(load_split(str(folder), "fold2", "validation")) > 0


@pytest.mark.parametrize("shard", ["fold1-00001-of-00003.parquet", "fold3-00000-of-00003.parquet"])
def test_a_deleted_shard_is_named_by_every_reader(folder, shard):
    (folder / "data" / shard).unlink()
    with pytest.raises(blemore.BlemoreError, match=f"shard data/{shard} is missing"):
        load_split(str(folder), "default", "train")
    # the test split is intact: validate used to say "no test split"; now the missing shard is named
    one_line_error(run_cli("validate", "any.json", "--against", folder), f"data/{shard} is missing")
    one_line_error(run_cli("score", "any.json", "--references", folder), f"data/{shard} is missing")


def test_every_shard_of_a_part_deleted_is_named_by_its_pattern(folder):
    for path in (folder / "data").glob("fold4-*.parquet"):
        path.unlink()
    with pytest.raises(blemore.BlemoreError, match=r"no shard matches data/fold4-\*\.parquet"):
        load_split(str(folder), "fold0", "train")


def test_a_damaged_shard_is_named(folder):
    shard = folder / "data" / "test-00001-of-00003.parquet"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(blemore.BlemoreError, match="shard data/test-00001-of-00003.parquet is damaged"):
        load_split(str(folder), "default", "test")


def test_a_replaced_shard_is_said_to_be_changed(folder):
    data = folder / "data"
    shutil.copy(data / "fold0-00000-of-00003.parquet", data / "fold0-00002-of-00003.parquet")
    with pytest.raises(blemore.BlemoreError, match=r"fold0 config's validation split: a shard was changed or "
                                                   r"replaced \(data/fold0-00000-of-00003.parquet"):
        load_split(str(folder), "fold0", "validation")


def test_a_config_or_split_the_folder_lacks_is_one_line(folder):
    with pytest.raises(blemore.BlemoreError, match="no dataset config 'fold7'"):
        load_split(str(folder), "fold7", "train")
    with pytest.raises(blemore.BlemoreError, match="the default config has no 'validation' split"):
        load_split(str(folder), "default", "validation")


@pytest.fixture(scope="module")
def unlabelled_folder(synthetic_raw, tmp_path_factory):
    """A folder prepared from the test clips alone: no labels anywhere."""
    raw = tmp_path_factory.mktemp("unlabelled") / "raw"
    (raw / "test").mkdir(parents=True)
    for clip in sorted((synthetic_raw / "test").glob("*.mov"))[:4]:
        shutil.copy(clip, raw / "test" / clip.name)
    out = raw.parent / "blemore"
    prepare_dataset(raw, out, progress=False)
    return out


@pytest.mark.parametrize("fold", ["none", "0", "all"])
def test_train_without_labelled_clips_is_one_line(unlabelled_folder, tmp_path, fold):
    one_line_error(run_cli("train", unlabelled_folder, "--fold", fold, "--output-dir", tmp_path / "run"),
                   "no labelled training clips", "splits: test")
    assert not (tmp_path / "run").exists()


def test_train_on_a_fold_the_folder_lacks_is_one_line(tmp_path):
    from blemore_toolkit.data.synth_encoding import write_clip

    raw = tmp_path / "raw"
    raw.mkdir()
    for i, name in enumerate(("A102_ang_int1_ver1", "A102_sad_int2_ver1")):  # actor A102: fold 1 in the manifest
        label = blemore.parse_clip_name(name)
        write_clip(raw / f"{name}.mov", label.emotions, label.salience, width=32, height=32, duration_s=1.0, seed=i)
    prepare_dataset(raw, tmp_path / "blemore", progress=False)
    one_line_error(run_cli("train", tmp_path / "blemore", "--fold", "0", "--output-dir", tmp_path / "run"),
                   "no clips of fold 0 to validate on", "fold1")
