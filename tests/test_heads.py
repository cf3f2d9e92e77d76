"""``blemore heads``: CV with α/β tuning, the test fit, the saved model and the submission, on synthetic features.

The features here are hand-built from the synthetic clips with ``synth_signal.signal_features`` (colour of the
picture, tone shares of the sound), stored as two features configs exactly as ``blemore features`` stores its
output; a random tiny encoder would not separate the labels reliably, and the encoder path is tested in
test_features.py. With them, a correct head must learn the labels; a label or fold bug shows up as a low score.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

import blemore
from blemore_toolkit.evaluation.tuning import tune_thresholds
from blemore_toolkit.features import cross_validation, head_training, heads
from blemore_toolkit.features.configs import FEATURES_DIR, PROVENANCE_FILE, feature_columns, register_config
from blemore_toolkit.features.cross_validation import cross_validate
from blemore_toolkit.features.extraction import aggregate
from blemore_toolkit.features.feature_table import load_feature_table
from blemore_toolkit.features.head_training import HeadSettings, predict_probabilities, train_head

CONFIGS = ("signal-audio", "signal-video")
#: Full-batch steps: the table is tiny, so per-step overhead, not arithmetic, is what costs time here.
FAST = dict(epochs=80, batch_size=256, lr=1e-2, weight_decay=1e-4, dropout=0.0, precision="float32")


def _signal_sequence(row: dict, steps: int = 4) -> np.ndarray:
    """(steps, 12) signal readouts over consecutive parts of the clip's frames and sound."""
    from torchcodec.decoders import AudioDecoder, VideoDecoder

    from blemore_toolkit.data.synth_signal import signal_features

    video = VideoDecoder(row["video"]["bytes"], dimension_order="NHWC")
    count = int(video.metadata.num_frames)
    frames = video.get_frames_at(indices=np.linspace(0, count - 1, 4 * steps).astype(int).tolist()).data.numpy()
    audio = AudioDecoder(row["audio"]["bytes"], sample_rate=16000, num_channels=1).get_all_samples().data[0].numpy()
    frame_parts, audio_parts = np.array_split(frames, steps), np.array_split(audio, steps)
    return np.stack([signal_features(f, a, 16000) for f, a in zip(frame_parts, audio_parts)])


@pytest.fixture(scope="module")
def dataset(prepared_dataset, tmp_path_factory):
    """A copy of the prepared dataset with two features configs: the picture's and the sound's signal readouts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    copy = tmp_path_factory.mktemp("heads") / "blemore"
    shutil.copytree(prepared_dataset, copy)
    columns = ["clip_id", "video", "audio", "split", "fold", "outcome", "soft_target", "presence"]
    parts = {"signal-video": slice(0, 6), "signal-audio": slice(6, 12)}
    for name in CONFIGS:
        (copy / FEATURES_DIR / name).mkdir(parents=True)
    for shard in sorted((copy / "data").glob("*.parquet")):
        rows = pq.read_table(shard, columns=columns).to_pylist()
        sequences = [_signal_sequence(row) for row in rows]
        for name, part in parts.items():
            features = feature_columns(6)
            records = [features.encode_example({
                **{k: row[k] for k in ("clip_id", "split", "fold", "outcome", "soft_target", "presence")},
                "features": aggregate(sequence[:, part]), "sequence": sequence[:, part], "num_windows": len(sequence),
            }) for row, sequence in zip(rows, sequences)]
            pq.write_table(pa.Table.from_pylist(records, schema=features.arrow_schema),
                           copy / FEATURES_DIR / name / shard.name)
    for name in CONFIGS:
        provenance = {"config_name": name, "encoder": "synth.signal_features", "kind": "hand-built"}
        (copy / FEATURES_DIR / name / PROVENANCE_FILE).write_text(json.dumps(provenance))
        register_config(copy, name, 6)
    return copy


@pytest.fixture(scope="module")
def table(dataset):
    return load_feature_table(dataset, list(CONFIGS))


def test_feature_table_aligns_configs_and_labels(dataset, table):
    import datasets

    assert list(table.features) == sorted(CONFIGS) and table.feature_sizes == {c: 42 for c in sorted(CONFIGS)}
    loaded = datasets.load_dataset(str(dataset), "signal-video", cache_dir=str(dataset.parent / "cache"))
    by_clip = {row["clip_id"]: row for row in loaded["train"]}
    for i in range(0, len(table.clip_ids), 17):
        clip = table.clip_ids[i]
        if table.split[i] == "train":
            np.testing.assert_allclose(table.features["signal-video"][i], by_clip[clip]["features"], rtol=1e-6)
            assert table.outcome[i] == blemore.parse_clip_name(clip).outcome and table.fold[i] == by_clip[clip]["fold"]
        else:
            assert table.outcome[i] == -1 and table.fold[i] == -1


def test_cross_validation_learns_the_synthetic_labels(table):
    cv = cross_validate(table, HeadSettings(head="mlp256", **FAST))
    summary = cv.summary()
    assert [f["fold"] for f in cv.folds] == [0, 1, 2, 3, 4]
    assert sum(f["n_clips"] for f in cv.folds) == int((table.split == "train").sum())
    assert summary["acc_presence"]["mean"] > 0.9, cross_validation.format_table(cv)
    assert summary["score"]["mean"] > 0.85, cross_validation.format_table(cv)
    # The pooled α/β are tuned on every out-of-fold prediction at once, so they do not beat the per-fold optima.
    assert cv.pooled["score"] <= np.mean([f["score"] for f in cv.folds]) + 1e-9
    # The pooled figure comes with its actor-bootstrap interval (one synthetic actor per fold: five clusters).
    assert cv.pooled["ci_method"] == "actor bootstrap" and cv.pooled["n_clusters"] == 5
    for metric in ("acc_presence", "acc_salience", "score"):
        low, high = cv.pooled["ci"][metric]
        assert low <= cv.pooled[metric] <= high
    assert "95% actor bootstrap over 5" in cross_validation.format_table(cv)
    # Late fusion: averaging each config's own head is what the two one-config CVs give, averaged.
    late = cross_validate(table, HeadSettings(head="linear", **FAST), groups=[["signal-audio"], ["signal-video"]])
    alone = [cross_validate(table, HeadSettings(head="linear", **FAST), groups=[[c]]) for c in sorted(CONFIGS)]
    rows = late.oof_mask
    np.testing.assert_allclose(late.oof_probabilities[rows],
                               (alone[0].oof_probabilities[rows] + alone[1].oof_probabilities[rows]) / 2, atol=1e-6)
    # Control: with the labels shuffled across clips there is nothing to learn, and the score shows it.
    shuffled = dataclasses.replace(table, soft_target=np.random.default_rng(0).permutation(table.soft_target))
    control = cross_validate(shuffled, HeadSettings(head="linear", **FAST)).summary()
    assert control["score"]["mean"] < summary["score"]["mean"] - 0.4


def test_standardisation_is_fitted_on_the_training_rows_and_folded_into_the_model(table):
    import torch

    rows = (table.split == "train") & (table.fold != 0)
    x = table.matrix()[rows]
    model = train_head(x, table.soft_target[rows], table.feature_sizes, HeadSettings(head="mlp256", epochs=0))
    (name,) = model.config.feature_sizes
    norm = model.blemore.projections[name].norm
    weight, bias = head_training.standardisation(x)
    np.testing.assert_allclose(norm.weight.detach().numpy(), weight, rtol=1e-6)
    with torch.no_grad():
        standardised = norm(torch.from_numpy(x)).numpy()
    varying = weight > 0
    np.testing.assert_allclose(standardised[:, varying].mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(standardised[:, varying].std(0), 1, atol=1e-3)


def test_the_linear_head_is_stored_exactly_as_a_linear_map(table):
    import torch

    rows = table.split == "train"
    x = table.matrix()[rows]
    model = train_head(x, table.soft_target[rows], table.feature_sizes, HeadSettings(head="linear", **FAST))
    (name,) = model.config.feature_sizes
    with torch.no_grad():
        z = model.blemore.projections[name].norm(torch.from_numpy(x)).double().numpy()
        logits = model(features=torch.from_numpy(x)).logits.double().numpy()
    design = np.concatenate([z, np.ones((len(z), 1))], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, logits, rcond=None)
    assert np.abs(design @ coefficients - logits).max() < 1e-4
    assert np.abs(logits).max() > 0.1  # and it did learn something


@pytest.mark.parametrize("head", ["gated", "cross_attention"])
def test_fusion_heads_reload_with_the_same_predictions(table, head, tmp_path):
    from transformers import AutoModelForVideoClassification

    rows = table.split == "train"
    settings = HeadSettings(head=head, hidden=32, epochs=3, batch_size=64, precision="float32")
    model = train_head(table.matrix()[rows], table.soft_target[rows], table.feature_sizes, settings)
    assert list(model.config.feature_sizes) == sorted(CONFIGS) and model.config.fusion == head
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForVideoClassification.from_pretrained(tmp_path, trust_remote_code=True)
    x = table.matrix()
    np.testing.assert_allclose(predict_probabilities(reloaded, x), predict_probabilities(model, x),
                               atol=1e-6)


def test_blemore_heads_command_saves_a_model_and_a_valid_submission(dataset, table, tmp_path, capsys):
    import torch
    from transformers import AutoModelForVideoClassification

    from blemore_toolkit.evaluation.submission import check_submission, read_submission

    output, submission = tmp_path / "head", tmp_path / "submission.json"
    argv = ["heads", *CONFIGS, "--dataset", str(dataset), "--head", "mlp256", "--output", str(output),
            "--submission", str(submission), "--epochs", "80", "--batch-size", "256", "--lr", "1e-2",
            "--dropout", "0", "--quiet"]
    assert blemore.main(argv) == 0
    printed = capsys.readouterr().out
    assert "mean" in printed and "pooled out-of-fold" in printed and str(output) in printed

    report = json.loads((output / "heads_report.json").read_text())
    model = AutoModelForVideoClassification.from_pretrained(output, trust_remote_code=True)
    assert type(model).__name__ == "BlemoreForBlendedEmotionRecognition"
    assert [model.config.presence_threshold, model.config.salience_threshold] == report["thresholds"]
    assert report["feature_configs"] == sorted(CONFIGS) and len(report["cv_folds"]) == 5

    test_rows = table.split == "test"
    test_ids = [c for c, keep in zip(table.clip_ids, test_rows) if keep]
    checked = check_submission(read_submission(submission), expected=test_ids)
    assert not checked.problems
    decoded = model.decode(model(features=torch.from_numpy(table.matrix()[test_rows])))
    written = json.loads(submission.read_text())["predictions"]
    assert [written[f"{c}.mov"] for c in test_ids] == decoded

    # `blemore predict` takes the saved head like any other model: it reads the features configs beside the clips.
    predicted = tmp_path / "predicted"
    assert blemore.main(["predict", str(output), str(dataset), "-o", str(predicted)]) == 0
    assert json.loads((predicted / "predictions.json").read_text())["predictions"] == written
    assert blemore.main(["predict", str(output), str(dataset), "--config", "fold2", "--split", "validation",
                         "-o", str(tmp_path / "fold2")]) == 0
    scored = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scored["clips"] == int((table.fold == 2).sum()) and 0 <= scored["score"] <= 1


def test_unknown_feature_config_is_one_line(dataset, capsys):
    assert blemore.main(["heads", "nope", "--dataset", str(dataset), "--cv-only"]) == 1
    message = capsys.readouterr().err.strip()
    assert "nope" in message and "signal-audio" in message and "\n" not in message


@pytest.mark.parametrize("rows", ["full rank", "repeated rows"])
def test_the_training_span_reproduces_the_training_rows_exactly(rows):
    """Wide features (D > N) are learned in the span of the training rows; mapped back, the layer must act on each
    training row exactly as it did on the row's coordinates."""
    import torch

    z = torch.from_numpy(np.random.default_rng(0).standard_normal((40, 300)).astype(np.float32))
    if rows == "repeated rows":  # a singular Gram matrix: the eigendecomposition path
        z = torch.cat([z, z[:10]])
    coordinates, to_features = head_training.training_span(z)
    assert coordinates.shape[1] == 40
    layer = torch.from_numpy(np.random.default_rng(1).standard_normal((7, 40)).astype(np.float32))
    np.testing.assert_allclose((z @ to_features(layer).T).numpy(), (coordinates @ layer.T).numpy(), atol=2e-3)


def test_a_wide_paper_head_trains_in_the_span_and_predicts_the_same_after_reload(table, tmp_path):
    """The fast path end to end: 300 noisy copies of the signal features (D > N), standardised, MLP, saved."""
    from transformers import AutoModelForVideoClassification

    rows = (table.split == "train") & (table.fold != 0)
    rng = np.random.default_rng(0)
    wide = np.repeat(table.matrix(), 4, axis=1) + 0.05 * rng.standard_normal((len(table.clip_ids), 336))
    wide = wide.astype(np.float32)
    settings = HeadSettings(head="mlp256", **FAST)
    model = train_head(wide[rows], table.soft_target[rows], {"wide": 336}, settings)
    valid = (table.split == "train") & (table.fold == 0)
    search = tune_thresholds(predict_probabilities(model, wide[valid]), table.outcome[valid])
    assert search.acc_presence > 0.8
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForVideoClassification.from_pretrained(tmp_path, trust_remote_code=True)
    np.testing.assert_allclose(predict_probabilities(reloaded, wide), predict_probabilities(model, wide),
                               atol=1e-6)


def test_push_to_hub_publishes_a_loadable_head(dataset, tmp_path, monkeypatch):
    import huggingface_hub.constants
    from huggingface_hub import HfApi
    from local_hub import run_local_hub

    with run_local_hub(tmp_path / "hub") as hub:
        for key, value in hub.environment(tmp_path / "hf_home", token="local-hub-dummy-token").items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
        report = heads.run_heads_pipeline(dataset, ["signal-video"], HeadSettings(head="linear", **FAST),
                                          output=tmp_path / "head", push_to_hub="me/blemore-linear",
                                          hub_endpoint=hub.url, progress=False)
        files = HfApi(endpoint=hub.url, token="local-hub-dummy-token").list_repo_files("me/blemore-linear")
    assert report["pushed"]["commit"]
    assert {"config.json", "model.safetensors", "modeling_blemore.py", "README.md", "heads_report.json"} <= set(files)
