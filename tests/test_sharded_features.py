"""``torchrun --nproc_per_node 2 -m blemore features ...``: two processes share the shards and write the config that
one process writes (equal arrays, one provenance file), and a run interrupted in one process count resumes in another.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from blemore_toolkit.features import extraction
from blemore_toolkit.features.extraction import extract_features
from blemore_toolkit.features.sharding import FeatureProcesses

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    from blemore_toolkit.training.tiny import save_tiny_encoders

    return save_tiny_encoders(tmp_path_factory.mktemp("encoders"), 16)["vit"]


@pytest.fixture(scope="module")
def dataset(prepared_dataset, tmp_path_factory):
    copy = tmp_path_factory.mktemp("sharded") / "blemore"
    shutil.copytree(prepared_dataset, copy)
    return copy


def _torchrun(dataset, *arguments):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "blemore", "features", "blemore", *arguments, "--quiet", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=dataset.parent, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _arrays(dataset, name):
    rows = {}
    for shard in sorted((dataset / "features" / name).glob("*.parquet")):
        for row in pq.read_table(shard).to_pylist():
            rows[row["clip_id"]] = row
    return rows


def _assert_same_config(dataset, a, b):
    first, second = _arrays(dataset, a), _arrays(dataset, b)
    assert sorted(first) == sorted(second)
    for clip, row in first.items():
        other = second[clip]
        for column in ("split", "fold", "outcome", "soft_target", "presence", "num_windows"):
            assert row[column] == other[column], (clip, column)
        np.testing.assert_array_equal(row["features"], other["features"])
        np.testing.assert_array_equal(row["sequence"], other["sequence"])
    shards = sorted(p.name for p in (dataset / "features" / a).glob("*.parquet"))
    assert shards == sorted(p.name for p in (dataset / "features" / b).glob("*.parquet"))


def test_two_processes_write_what_one_writes(dataset, encoder):
    extract_features(dataset, str(encoder), config_name="single", frames_per_second=1.0, progress=False,
                     device="cpu")
    result = _torchrun(dataset, "--encoder", str(encoder), "--name", "two", "--frames-per-second", "1")
    _assert_same_config(dataset, "single", "two")
    assert result.stdout.count("features 'two'") == 1  # the first process alone reports
    provenance = json.loads((dataset / "features" / "two" / "provenance.json").read_text())
    single = json.loads((dataset / "features" / "single" / "provenance.json").read_text())
    assert provenance["processes"] == 2 and provenance["fingerprint"] == single["fingerprint"]
    assert not (dataset / "features" / "two" / ".done").exists()
    assert not list((dataset / "features" / "two").glob(".*.partial"))
    header = (dataset / "README.md").read_text().split("---\n", 2)[1]
    assert header.count("config_name: two") == 2  # configs and dataset_info, once each


def test_an_interrupted_run_resumes_shard_by_shard_in_two_processes(dataset, encoder, monkeypatch):
    real_write = extraction.write_feature_shard
    written = []

    def write_two_then_fail(shard, *args, **kwargs):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(shard.name)
        return real_write(shard, *args, **kwargs)

    monkeypatch.setattr(extraction, "write_feature_shard", write_two_then_fail)
    with pytest.raises(KeyboardInterrupt):
        extract_features(dataset, str(encoder), config_name="resumed", frames_per_second=1.0, progress=False,
                         device="cpu")
    monkeypatch.undo()
    total = len(list((dataset / "data").glob("*.parquet")))
    result = _torchrun(dataset, "--encoder", str(encoder), "--name", "resumed", "--frames-per-second", "1")
    assert f"({total - 2} shards written, 2 reused)" in result.stdout
    if not (dataset / "features" / "single").is_dir():
        extract_features(dataset, str(encoder), config_name="single", frames_per_second=1.0, progress=False,
                         device="cpu")
    _assert_same_config(dataset, "single", "resumed")


def test_cuda_means_the_local_ranks_gpu():
    assert FeatureProcesses(rank=3, world_size=4, local_rank=1).device("cuda") == "cuda:1"
    assert FeatureProcesses(rank=3, world_size=4, local_rank=1).device("cuda:0") == "cuda:0"
    assert FeatureProcesses().device("cuda") == "cuda"
    assert FeatureProcesses(rank=1, world_size=3).share(list("abcdefg")) == ["b", "e"]
