"""Sequence heads (``blemore heads --head attention_pool|temporal_transformer|cross_modal``) on generated sequences.

Two synthetic tasks make the point of the recipe measurable:

* **order only**: a blend's windows show each of its two emotions equally often; which comes first encodes the
  salience (a then b: 70/30, b then a: 30/70, alternating: 50/50). The seven order-free statistics are then the
  same for the three saliences, so a statistics head stays at chance on salience (1/3 when presence is right),
  while a sequence head must reach ≥ 0.9;
* **cross-modal**: the video windows show the pair's two emotions as two blocks in random order; the audio windows
  (twice the window rate) are loud while the dominant emotion is on screen (loud throughout for 50/50). Neither
  modality alone decides the salience; the two together do.

Both are learnt through ``cross_validation.cross_validate``: the same 5-fold CV, α/β tuning and pooled figures as
every head.
Torch runs on one thread here: tiny models on a shared two-core machine run ~30× faster than with two contending
threads.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import blemore
from blemore_toolkit.features import cross_validation, head_training, heads
from blemore_toolkit.features.configs import FEATURES_DIR, PROVENANCE_FILE, feature_columns
from blemore_toolkit.features.cross_validation import cross_validate
from blemore_toolkit.features.extraction import aggregate
from blemore_toolkit.features.head_training import HeadSettings
from blemore_toolkit.features.sequence_heads import SEQUENCE_RECIPE, SequenceTable, load_sequence_table

TARGETS = np.array([blemore.soft_target(o.emotions, o.salience) for o in blemore.OUTCOMES], dtype=np.float32)
#: Small and fast, but enough for each sequence head to learn both tasks (measured: ≥ 0.94 pooled salience).
FAST = dict(hidden=32, epochs=60, batch_size=128, lr=1e-2, weight_decay=1e-4, dropout=0.0, precision="float32")


@pytest.fixture(autouse=True)
def one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _emotion_indices(outcome: int) -> list[int]:
    return [blemore.EMOTIONS.index(e) for e in blemore.OUTCOMES[outcome].emotions]


def order_task(clips: int = 400, windows: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes and (clips, windows, 8) sequences whose salience is carried only by the order of the windows."""
    rng = np.random.default_rng(seed)
    outcomes = rng.integers(0, len(blemore.OUTCOMES), clips)
    sequences = np.zeros((clips, windows, 8), dtype=np.float32)
    half = windows // 2
    for i, outcome in enumerate(outcomes):
        indices = _emotion_indices(outcome)
        if len(indices) == 1:
            pattern = indices * windows
        else:
            a, b = indices
            first_salience = blemore.OUTCOMES[outcome].salience[0]
            pattern = {50: [a, b] * half, 70: [a] * half + [b] * half, 30: [b] * half + [a] * half}[first_salience]
        sequences[i, np.arange(windows), pattern] = 1.0
    sequences += 0.1 * rng.standard_normal(sequences.shape).astype(np.float32)
    return outcomes, sequences


def cross_modal_task(clips: int = 400, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outcomes, video (clips, 4, 8) and audio (clips, 8, 4) sequences that decide the salience only together."""
    rng = np.random.default_rng(seed)
    outcomes = rng.integers(0, len(blemore.OUTCOMES), clips)
    video = np.zeros((clips, 4, 8), dtype=np.float32)
    audio = np.zeros((clips, 8, 4), dtype=np.float32)
    for i, outcome in enumerate(outcomes):
        indices = _emotion_indices(outcome)
        if len(indices) == 1:
            video[i, :, indices[0]] = 1.0
            audio[i, :, 0] = 1.0
            continue
        a, b = indices if rng.random() < 0.5 else indices[::-1]  # which emotion's block comes first: random
        video[i, np.arange(4), [a, a, b, b]] = 1.0
        first, second = blemore.OUTCOMES[outcome].emotions
        salience = dict(zip((blemore.EMOTIONS.index(first), blemore.EMOTIONS.index(second)),
                            blemore.OUTCOMES[outcome].salience))
        if salience[a] == 50:
            audio[i, :, 0] = 1.0
        else:  # loud in the two audio windows of each video window that shows the dominant emotion
            dominant_first = salience[a] == 70
            audio[i, :4, 0], audio[i, 4:, 0] = (1.0, 0.0) if dominant_first else (0.0, 1.0)
    audio[:, :, 1] = 1.0 - audio[:, :, 0]  # quiet, as its own channel
    video += 0.1 * rng.standard_normal(video.shape).astype(np.float32)
    audio += 0.1 * rng.standard_normal(audio.shape).astype(np.float32)
    return outcomes, video, audio


def sequence_table(outcomes: np.ndarray, sequences: dict[str, np.ndarray]) -> SequenceTable:
    clips = len(outcomes)
    return SequenceTable(
        clip_ids=[f"clip_{i:04d}" for i in range(clips)], split=np.array(["train"] * clips),
        fold=np.arange(clips) % blemore.NUM_FOLDS, outcome=outcomes, soft_target=TARGETS[outcomes],
        features={name: np.stack([aggregate(s) for s in values]) for name, values in sequences.items()},
        sequences=sequences, num_windows={name: np.full(clips, values.shape[1]) for name, values in sequences.items()},
    )


@pytest.fixture(scope="module")
def order_table() -> SequenceTable:
    outcomes, sequences = order_task()
    return sequence_table(outcomes, {"windows": sequences})


def test_head_names_agree_with_the_model():
    from blemore_toolkit.modeling.sequence_heads_blemore import SEQUENCE_HEADS

    assert head_training.SEQUENCE_HEADS == SEQUENCE_HEADS and set(SEQUENCE_HEADS) <= set(head_training.HEADS)
    from blemore_toolkit.features.sequence_heads import head_recipe

    assert head_recipe("cross_modal") is SEQUENCE_RECIPE and head_recipe("mlp512") is head_training.STATISTICS_RECIPE
    assert head_recipe(None) is head_training.STATISTICS_RECIPE
    with pytest.raises(blemore.BlemoreError, match="sequence head"):
        cross_validate(sequence_table(*order_task(clips=20)[:1], {}), HeadSettings(head="attention_pool"))


def test_statistics_heads_are_at_chance_on_salience_when_only_order_carries_it(order_table):
    cv = cross_validate(order_table, HeadSettings(head="mlp256", **FAST))
    # Presence is in the statistics (which emotions occur), so the head is not broken ...
    assert cv.pooled["acc_presence"] > 0.9, cross_validation.format_table(cv)
    # ... but the three saliences of a pair have the same statistics: chance is 1/3 of the blends.
    assert cv.pooled["acc_salience"] < 0.45, cross_validation.format_table(cv)


@pytest.mark.parametrize("head", head_training.SEQUENCE_HEADS)
def test_sequence_heads_learn_salience_from_window_order(order_table, head):
    cv = cross_validate(order_table, HeadSettings(head=head, **FAST), recipe=SEQUENCE_RECIPE)
    assert cv.pooled["acc_salience"] >= 0.9, cross_validation.format_table(cv)
    assert cv.pooled["acc_presence"] >= 0.9, cross_validation.format_table(cv)


def test_sequence_heads_train_and_select_as_the_paper_protocol_says(order_table, monkeypatch):
    """The protocol reaches the sequence heads through the shared CV: the paper protocol's Adam (L2 decay), every
    epoch scored on the validation fold with the best epoch's weights kept, its α/β grid, and the best fold's α/β
    for the test fit."""
    import torch

    from blemore_toolkit.evaluation.tuning import PAPER_GRID

    optimisers = []

    class RecordedAdam(torch.optim.Adam):
        def __init__(self, *args, **kwargs):
            optimisers.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", RecordedAdam)
    table = order_table.rows(np.arange(len(order_table.clip_ids)) < 200)
    settings = HeadSettings(head="attention_pool", protocol="paper", **{**FAST, "epochs": 4})
    cv = cross_validate(table, settings, recipe=SEQUENCE_RECIPE)
    assert len(optimisers) == blemore.NUM_FOLDS
    assert all(o["lr"] == FAST["lr"] and o["weight_decay"] == FAST["weight_decay"] for o in optimisers)
    for fold in cv.folds:
        (scores,) = cv.epoch_scores[fold["fold"]]
        assert len(scores) == 4 and fold["best_epoch"] == int(np.argmax(scores)) + 1
        composite = fold["acc_presence"] / 2 if np.isnan(fold["score"]) else fold["score"]
        assert composite == pytest.approx(scores[fold["best_epoch"] - 1], abs=1e-9)
        assert fold["alpha"] in PAPER_GRID.presence and fold["beta"] in PAPER_GRID.salience
    best = cross_validation.best_fold(cv)
    assert cross_validation.test_fit_thresholds(cv, settings.training)[0] == (best["alpha"], best["beta"])


def test_cross_modal_head_needs_both_modalities():
    outcomes, video, audio = cross_modal_task()
    table = sequence_table(outcomes, {"video": video, "audio": audio})
    settings = HeadSettings(head="cross_modal", **{**FAST, "epochs": 40})  # measured: 0.976 together, <= 0.35 alone
    both = cross_validate(table, settings, recipe=SEQUENCE_RECIPE)
    assert both.pooled["acc_salience"] >= 0.9, cross_validation.format_table(both)
    # Video alone cannot tell which block dominates, audio alone cannot tell which emotions: each stays well below.
    # What one modality lacks no amount of data gives it, so two folds (half the clips each) show it at a quarter of
    # five folds' training work: the test stays within its time limit on a loaded machine.
    halves = dataclasses.replace(table, fold=np.arange(len(outcomes)) % 2)
    for name in ("video", "audio"):
        alone = cross_validate(halves, settings, groups=[[name]], recipe=SEQUENCE_RECIPE)
        assert len(alone.folds) == 2
        assert alone.pooled["acc_salience"] < 0.75, (name, cross_validation.format_table(alone))


def test_saved_sequence_model_ignores_padding_and_reloads_exactly(tmp_path):
    import torch
    from transformers import AutoModelForVideoClassification, AutoProcessor

    from blemore_toolkit.features.sequence_heads import (
        SequenceInputs,
        predict_sequence_probabilities,
        train_sequence_head,
    )

    outcomes, video, audio = cross_modal_task(clips=40)
    counts = np.random.default_rng(0).integers(1, 9, len(outcomes))
    inputs = SequenceInputs({"video": video, "audio": audio}, {"video": np.full(len(outcomes), 4), "audio": counts})
    settings = HeadSettings(head="temporal_transformer", **{**FAST, "epochs": 2})
    model = train_sequence_head(inputs, TARGETS[outcomes], None, settings)
    assert model.config.feature_input_kind == "sequence" and model.config.feature_sizes == {"audio": 4, "video": 8}
    probabilities = predict_sequence_probabilities(model, inputs)
    # What lies in padded windows must not matter.
    garbage = {"video": video, "audio": audio.copy()}
    for i, count in enumerate(counts):
        garbage["audio"][i, count:] = 1e3
    np.testing.assert_allclose(predict_sequence_probabilities(model, SequenceInputs(garbage, inputs.num_windows)),
                               probabilities, atol=1e-6)
    # The per-window standardisation is the training windows' and is frozen into the model.
    norm = model.blemore.sequence_encoder.projections["audio"].norm
    assert not torch.allclose(norm.weight, torch.ones_like(norm.weight))
    model.save_pretrained(tmp_path)
    assert (tmp_path / "sequence_heads_blemore.py").is_file()
    # the classifier's task class (AutoModel gives the base model, as for every BLEMORE model)
    reloaded = AutoModelForVideoClassification.from_pretrained(tmp_path, trust_remote_code=True).eval()
    assert type(reloaded).__name__ == "BlemoreForBlendedEmotionRecognition"
    np.testing.assert_allclose(predict_sequence_probabilities(reloaded, inputs), probabilities, atol=1e-6)
    with pytest.raises(ValueError, match="sequence head needs `features` as a dict"):
        reloaded(features=torch.zeros(2, 12))
    # The saved processor says what the model takes and pads unpadded clips into it.
    processor = AutoProcessor.from_pretrained(tmp_path, trust_remote_code=True)
    assert processor.feature_sizes == {"audio": 4, "video": 8}
    clips = [{"video": video[i], "audio": audio[i, :count]} for i, count in enumerate(counts)]
    with torch.inference_mode():
        logits = reloaded(**processor(clips)).logits
    np.testing.assert_allclose(logits.softmax(-1).numpy(), probabilities, atol=1e-5)
    with pytest.raises(ValueError, match="'audio' has shape"):
        processor([{"video": video[0], "audio": video[0]}])


def _write_sequence_config(dataset, name: str, clip_ids, splits, folds, outcomes, sequences, counts) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = dataset / FEATURES_DIR / name
    folder.mkdir(parents=True)
    columns = feature_columns(sequences.shape[-1])
    records = []
    for clip, split, fold, outcome, sequence, count in zip(clip_ids, splits, folds, outcomes, sequences, counts):
        labelled = split == "train"
        records.append(columns.encode_example({
            "clip_id": clip, "split": split, "fold": int(fold) if labelled else None,
            "outcome": int(outcome) if labelled else None,
            "soft_target": TARGETS[outcome].tolist() if labelled else None,
            "presence": (TARGETS[outcome] > 0).astype(np.float32).tolist() if labelled else None,
            "features": aggregate(sequence[:count]), "sequence": sequence[:count], "num_windows": int(count),
        }))
    half = len(records) // 2  # two shards, in a different clip order than the other config's
    for index, part in enumerate((records[half:], records[:half])):
        pq.write_table(pa.Table.from_pylist(part, schema=columns.arrow_schema),
                       folder / f"train-{index:05d}-of-00002.parquet")
    (folder / PROVENANCE_FILE).write_text(json.dumps({"config_name": name, "encoder": "generated", "kind": "test"}))


def test_heads_command_trains_saves_and_predicts_with_sequences(tmp_path):
    """``blemore heads --head cross_modal`` end to end on stored sequences of two configs with different window
    rates and lengths: CV, saved model, out-of-fold and test probabilities, submission, and ``predict``."""
    from blemore_toolkit.cli import main
    from blemore_toolkit.evaluation.probabilities import read_probabilities
    from blemore_toolkit.training.predict import load_model, predict_features

    outcomes, video, audio = cross_modal_task(clips=120, seed=3)
    rng = np.random.default_rng(3)
    clips = len(outcomes)
    splits = np.where(np.arange(clips) < 100, "train", "test")
    clip_ids = [f"clip_{i:04d}" if s == "train" else f"test_{i:04d}" for i, s in enumerate(splits)]
    folds = np.arange(clips) % blemore.NUM_FOLDS
    audio_counts = rng.integers(5, 9, clips)  # audio clips of different lengths: padding is exercised
    dataset = tmp_path / "blemore"
    _write_sequence_config(dataset, "video-seq", clip_ids, splits, folds, outcomes, video, np.full(clips, 4))
    _write_sequence_config(dataset, "audio-seq", clip_ids, splits, folds, outcomes, audio, audio_counts)

    table = load_sequence_table(dataset, ["video-seq", "audio-seq"])
    row = table.clip_ids.index("clip_0007")
    np.testing.assert_allclose(table.sequences["audio-seq"][row, :audio_counts[7]], audio[7, :audio_counts[7]])
    assert table.num_windows["audio-seq"][row] == audio_counts[7]
    assert not table.sequences["audio-seq"][row, audio_counts[7]:].any()

    output, submission = tmp_path / "run", tmp_path / "submission.json"
    assert main(["heads", "video-seq", "audio-seq", "--dataset", str(dataset), "--head", "cross_modal",
                 "--hidden", "16", "--epochs", "2", "--batch-size", "64", "--precision", "float32",
                 "--output", str(output), "--submission", str(submission), "--quiet"]) == 0
    report = json.loads((output / "heads_report.json").read_text())
    assert report["head"] == "cross_modal" and report["model_feature_sizes"] == {"audio-seq": 4, "video-seq": 8}
    # the protocol's CV outputs, as for every head: per-fold validation probabilities = the out-of-fold file's
    results = json.loads((output / "cv" / "results.json").read_text())
    assert results["head"] == "cross_modal" and results["protocol"] == "toolkit" and len(results["folds"]) == 5
    oof_ids, oof, truth = read_probabilities(output / heads.OOF_PROBABILITIES_FILE)
    assert sorted(oof_ids) == sorted(c for c in clip_ids if c.startswith("clip_")) and truth is not None
    oof_by_clip = dict(zip(oof_ids, oof))
    for fold in range(blemore.NUM_FOLDS):
        lines = (output / "cv" / f"fold{fold}" / "validation_probabilities.csv").read_text().splitlines()[1:]
        assert len(lines) == sum(1 for c, f, s in zip(clip_ids, folds, splits) if s == "train" and f == fold)
        for line in lines:
            clip, *values = line.split(",")
            # the out-of-fold file keeps 6 decimals (``write_probabilities``), the per-fold files every digit
            np.testing.assert_allclose(np.array(values, dtype=float), oof_by_clip[clip], rtol=0, atol=5e-7)
    test_ids, test_probabilities, _ = read_probabilities(output / heads.TEST_PROBABILITIES_FILE)
    assert sorted(test_ids) == sorted(c for c in clip_ids if c.startswith("test_"))
    assert len(json.loads(submission.read_text())["predictions"]) == clips - 100

    model, processor = load_model(str(output))
    assert processor is None and model.config.sequence_head == "cross_modal"
    result, labels = predict_features(model, str(dataset), "default", "test")
    assert labels is None
    by_clip = dict(zip(result["clip_ids"], result["probabilities"]))
    np.testing.assert_allclose(np.array([by_clip[c] for c in test_ids]), test_probabilities, atol=2e-6)
    # `blemore predict` on a validation fold: the same sequences, labelled, scored.
    assert main(["predict", str(output), str(dataset), "--config", "fold2", "--split", "validation",
                 "--output-dir", str(tmp_path / "predicted")]) == 0
    predicted_ids, predicted, predicted_truth = read_probabilities(tmp_path / "predicted" / "probabilities.csv")
    assert sorted(predicted_ids) == sorted(c for c, f, s in zip(clip_ids, folds, splits) if s == "train" and f == 2)
    assert predicted_truth.tolist() == [int(outcomes[clip_ids.index(c)]) for c in predicted_ids]
