"""``blemore features``: tiny random image, video and audio encoders saved locally stand in for real ones.

What is checked: the stored config loads with ``load_dataset(DATASET, name)`` offline, beside the untouched clip
configs and card; shapes, labels and the seven statistics are right; provenance is recorded; an interrupted run
resumes at the first unfinished shard; bad input is one clear line.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import blemore
from blemore_toolkit.data.loading import read_label_table
from blemore_toolkit.features import extraction
from blemore_toolkit.features.configs import parse_layers
from blemore_toolkit.features.extraction import STATISTICS, aggregate, extract_features

HIDDEN = 16


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    """Tiny random ViT (image), VideoMAE (video) and WavLM (audio) folders with their preprocessors."""
    from blemore_toolkit.training.tiny import save_tiny_encoders

    root = tmp_path_factory.mktemp("encoders")
    save_tiny_encoders(root, HIDDEN)
    return root


@pytest.fixture(scope="module")
def dataset(prepared_dataset, tmp_path_factory):
    """A private copy of the prepared synthetic dataset (the session fixture is shared and must stay untouched)."""
    copy = tmp_path_factory.mktemp("features") / "blemore"
    shutil.copytree(prepared_dataset, copy)
    return copy


@pytest.fixture(scope="module")
def extracted(dataset, encoders):
    """All three kinds extracted once into ``dataset`` (image frames at 1 per second to keep it quick)."""
    results = {
        "vit": extract_features(dataset, str(encoders / "vit"), frames_per_second=1.0, progress=False),
        "videomae": extract_features(dataset, str(encoders / "videomae"), frame_stride=2, progress=False),
        "wavlm-l1-2": extract_features(dataset, str(encoders / "wavlm"), layers="1-2", progress=False),
    }
    return results


def _label_columns(dataset):
    table = read_label_table(dataset)
    return dict(zip(table["clip_id"], zip(table["split"], table["fold"])))


def test_the_seven_statistics_are_stored_statistic_by_statistic():
    sequence = np.array([[0.0, 10.0], [1.0, 20.0], [2.0, 30.0], [3.0, 40.0], [4.0, 50.0]])
    stats = aggregate(sequence).reshape(len(STATISTICS), 2)
    assert stats[0].tolist() == [2.0, 30.0]  # mean
    np.testing.assert_allclose(stats[1], [np.sqrt(2.0), np.sqrt(200.0)], rtol=1e-6)  # population std
    np.testing.assert_allclose(stats[2:, 0], [0.4, 1.0, 2.0, 3.0, 3.6], rtol=1e-6)  # p10 p25 p50 p75 p90
    single = aggregate(np.array([[1.0, 2.0]])).reshape(len(STATISTICS), 2)
    assert single[1].tolist() == [0.0, 0.0] and single[4].tolist() == [1.0, 2.0]


def test_layer_choices_parse():
    assert parse_layers("last") == "last" and parse_layers("all") == "all"
    assert parse_layers("6-9") == [6, 7, 8, 9]
    assert parse_layers("1,3,-1") == [1, 3, -1]
    with pytest.raises(blemore.BlemoreError):
        parse_layers("six")


def test_features_configs_load_with_load_dataset_next_to_the_clips(dataset, extracted, tmp_path):
    import datasets

    clips = _label_columns(dataset)
    for name, result in extracted.items():
        assert result.config == name and result.hidden_size == HIDDEN
        loaded = datasets.load_dataset(str(dataset), name, cache_dir=str(tmp_path / "cache"))
        assert set(loaded) == {"train", "test"}
        assert len(loaded["train"]) + len(loaded["test"]) == len(clips)
        for row in loaded["train"].select(range(5)):
            assert len(row["features"]) == len(STATISTICS) * HIDDEN
            sequence = np.asarray(row["sequence"])
            assert sequence.shape == (row["num_windows"], HIDDEN) and row["num_windows"] >= 1
            assert (row["split"], row["fold"]) == clips[row["clip_id"]]
            assert row["outcome"] == blemore.parse_clip_name(row["clip_id"]).outcome
            assert abs(sum(row["soft_target"]) - 1.0) < 1e-6
        test_row = loaded["test"][0]
        assert test_row["outcome"] is None and test_row["soft_target"] is None and test_row["fold"] is None
        # For frames and windows, the stored statistics are those of the stored sequence.
        if name != "wavlm-l1-2":
            row = loaded["train"][0]
            np.testing.assert_allclose(row["features"], aggregate(np.asarray(row["sequence"])), rtol=1e-5, atol=1e-6)


def test_the_card_keeps_its_configs_and_text(dataset, extracted, prepared_dataset, tmp_path):
    import yaml

    before, after = (p.joinpath("README.md").read_text() for p in (prepared_dataset, dataset))
    assert before.split("---\n", 2)[2] == after.split("---\n", 2)[2]  # the card's text is untouched
    header = yaml.safe_load(after.split("---\n", 2)[1])
    names = [c["config_name"] for c in header["configs"]]
    assert names == blemore.config_names() + ["vit", "videomae", "wavlm-l1-2"]  # named after encoder and layers
    assert [i["config_name"] for i in header["dataset_info"]] == names
    import datasets

    fold0 = datasets.load_dataset(str(dataset), "fold0", cache_dir=str(tmp_path / "cache"))
    assert set(fold0) == {"train", "validation", "test"}


def test_provenance_records_how_the_features_were_made(dataset, extracted, encoders):
    video = json.loads((dataset / "features" / "videomae" / "provenance.json").read_text())
    assert video["kind"] == "video" and video["window"] == 4 and video["frame_stride"] == 2
    assert video["encoder"] == "videomae" and video["encoder_source"] == "local folder"  # never its local path
    assert video["encoder_class"] == "VideoMAEModel"
    assert set(video["weights_sha256"]) == {"model.safetensors"}
    assert video["aggregation"]["statistics"] == list(STATISTICS)
    assert video["toolkit_version"]
    audio = json.loads((dataset / "features" / "wavlm-l1-2" / "provenance.json").read_text())
    assert audio["kind"] == "audio" and audio["layers"] == [1, 2] and audio["audio_window_s"] == 0.5
    image = json.loads((dataset / "features" / "vit" / "provenance.json").read_text())
    assert image["kind"] == "image" and image["frames_per_second"] == 1.0 and image["window"] is None


def test_an_interrupted_run_resumes_at_the_first_unfinished_shard(dataset, encoders, extracted, monkeypatch):
    real_write = extraction.write_feature_shard
    calls = []

    def write_two_then_fail(shard, *args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(shard.name)
        return real_write(shard, *args, **kwargs)

    monkeypatch.setattr(extraction, "write_feature_shard", write_two_then_fail)
    with pytest.raises(KeyboardInterrupt):
        extract_features(dataset, str(encoders / "videomae"), config_name="resumed", frame_stride=2, progress=False)
    out = dataset / "features" / "resumed"
    assert sorted(p.name for p in out.glob("*.parquet")) == sorted(calls)
    assert not list(out.glob(".*.partial")) and "resumed" not in (dataset / "README.md").read_text()

    monkeypatch.setattr(extraction, "write_feature_shard", real_write)
    result = extract_features(dataset, str(encoders / "videomae"), config_name="resumed", frame_stride=2,
                              progress=False)
    assert result.shards_reused == 2 and result.shards_written == len(list((dataset / "data").glob("*.parquet"))) - 2
    import pyarrow.parquet as pq

    for shard in calls:  # the reused shards are what a full run writes
        resumed = pq.read_table(out / shard).column("features").to_pylist()
        fresh = pq.read_table(dataset / "features" / "videomae" / shard).column("features").to_pylist()
        np.testing.assert_allclose(resumed, fresh, rtol=1e-5, atol=1e-6)

    with pytest.raises(blemore.BlemoreError, match="other settings"):
        extract_features(dataset, str(encoders / "videomae"), config_name="resumed", frame_stride=3, progress=False)


def test_bad_input_is_one_line(dataset, encoders, tmp_path, capsys):
    assert blemore.main(["features", str(dataset), "--encoder", str(tmp_path / "nowhere")]) == 1
    message = capsys.readouterr().err.strip()
    assert message.startswith("blemore features: error:") and "nowhere" in message and "\n" not in message

    assert blemore.main(["features", str(tmp_path), "--encoder", str(encoders / "vit")]) == 1
    assert "not a prepared dataset" in capsys.readouterr().err

    assert blemore.main(["features", str(dataset), "--encoder", str(encoders / "vit"), "--name", "fold0"]) == 1
    assert "config name" in capsys.readouterr().err

    assert blemore.main(["features", str(dataset), "--encoder", str(encoders / "wavlm"), "--layers", "7"]) == 1
    assert "hidden states 0..2" in capsys.readouterr().err


def test_a_re_extracted_config_loads_its_new_features(dataset, encoders, extracted):
    """``load_dataset`` caches a local folder by its name and header: the header's split sizes keep it current.

    (Sizes tell apart a re-extraction that stores other amounts of data, as here with another frame rate; one that
    changes only the values of same-shaped features can keep the same sizes; see ``config_info``.)
    """
    import datasets
    import pyarrow.parquet as pq

    extract_features(dataset, str(encoders / "vit"), config_name="redo", frames_per_second=1.0, progress=False)
    first = datasets.load_dataset(str(dataset), "redo", split="train")[0]
    extract_features(dataset, str(encoders / "vit"), config_name="redo", frames_per_second=2.0, overwrite=True,
                     progress=False)
    again = datasets.load_dataset(str(dataset), "redo", split="train")
    stored = {row["clip_id"]: row["num_windows"] for path in sorted((dataset / "features" / "redo").glob("*.parquet"))
              for row in pq.read_table(path, columns=["clip_id", "num_windows"]).to_pylist()}
    assert again[0]["num_windows"] == stored[again[0]["clip_id"]] > first["num_windows"]


def test_no_local_path_reaches_the_features_or_the_card(dataset, extracted, encoders, tmp_path_factory):
    """``push`` publishes the dataset folder: a local encoder is recorded by its folder's name and weights digest."""
    base = tmp_path_factory.getbasetemp()
    files = [p for p in (dataset / "features").rglob("*") if p.is_file()] + [dataset / "README.md"]
    assert any(p.name == "provenance.json" for p in files)
    for path in files:
        data = path.read_bytes()
        for part in (str(base), str(encoders), encoders.name, base.name):
            assert part.encode() not in data, f"{path.relative_to(dataset)} holds {part!r}"
    video = json.loads((dataset / "features" / "videomae" / "provenance.json").read_text())
    assert video["fingerprint"]["encoder"] == "videomae" and video["fingerprint"]["weights_sha256"]


def test_a_run_fingerprinted_with_the_folders_path_resumes(dataset, encoders, extracted, tmp_path):
    """Runs made before local folders were recorded by name fingerprinted the folder's path as given: resumed with
    the same folder, an interrupted one keeps its finished shards and is then recorded by name; a config recorded
    that way with other weights is still refused."""
    from blemore_toolkit.features.configs import _shard_fingerprint

    copy = tmp_path / "blemore"
    shutil.copytree(dataset, copy)
    out, folder = copy / "features" / "videomae", str(encoders / "videomae")
    provenance = json.loads((out / "provenance.json").read_text())
    legacy = {**provenance["fingerprint"], "encoder": folder}
    (out / "provenance.json").write_text(json.dumps({**provenance, "fingerprint": legacy}))
    shards = sorted((copy / "data").glob("*.parquet"))
    (out / ".done").mkdir()
    for shard in shards[:-1]:  # finished then; the last one was not
        (out / ".done" / shard.name).write_text(_shard_fingerprint(shard, legacy))
    (out / shards[-1].name).unlink()
    finished = {shard.name: (out / shard.name).read_bytes() for shard in shards[:-1]}

    result = extract_features(copy, folder, frame_stride=2, progress=False)
    assert (result.shards_reused, result.shards_written) == (len(shards) - 1, 1)
    assert {name: (out / name).read_bytes() for name in finished} == finished
    assert json.loads((out / "provenance.json").read_text())["fingerprint"] == provenance["fingerprint"]

    other = {**legacy, "weights_sha256": {"model.safetensors": "0" * 64}}
    (out / "provenance.json").write_text(json.dumps({**provenance, "fingerprint": other}))
    with pytest.raises(blemore.BlemoreError, match="other settings"):
        extract_features(copy, folder, frame_stride=2, progress=False)


def test_a_local_encoder_is_told_apart_by_its_weights_not_its_place(dataset, encoders, extracted, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    provenance = dataset / "features" / "videomae" / "provenance.json"
    before = json.loads(provenance.read_text())
    moved = tmp_path / "elsewhere" / "videomae"  # the same encoder in another folder: the same config
    shutil.copytree(encoders / "videomae", moved)
    extract_features(dataset, str(moved), frame_stride=2, progress=False)
    after = json.loads(provenance.read_text())
    assert after["fingerprint"] == before["fingerprint"] and after["clips"] == before["clips"]

    other = tmp_path / "other" / "videomae"  # a folder of the same name with other weights: refused
    shutil.copytree(encoders / "videomae", other)
    tensors = load_file(other / "model.safetensors")
    first = sorted(tensors)[0]
    tensors[first] = tensors[first] + torch.ones_like(tensors[first])
    save_file(tensors, other / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(blemore.BlemoreError, match="other settings"):
        extract_features(dataset, str(other), frame_stride=2, progress=False)
    assert json.loads(provenance.read_text()) == after
