"""``blemore ensemble``: late fusion of runs' out-of-fold probabilities, nested CV of the weights, decoder choice.

Members are generated probability files in the layouts the two producers write: a ``blemore heads`` output folder
(``oof_probabilities.csv`` + ``test_probabilities.csv``) and a ``blemore train`` run (``fold*/
validation_probabilities.csv`` + ``test/probabilities.csv`` from ``blemore predict``). Their errors are built to be
complementary: each member is confident and right on its own half of the clips and unsure elsewhere, so the
fusion must beat both; a third, pure-noise member must get (nearly) no weight.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import blemore
from blemore_toolkit.evaluation.probabilities import write_probabilities
from blemore_toolkit.evaluation.tuning import outcome_scores
from blemore_toolkit.features import ensemble as ens
from blemore_toolkit.modeling.decoding_blemore import decode, decode_outcomes

TARGETS = ens.TARGETS
TRAIN, TEST = 500, 60


def _member_probabilities(outcomes: np.ndarray, knows: np.ndarray, rng) -> np.ndarray:
    """Right and confident (near the soft target) where ``knows``; elsewhere a flat guess leaning to a wrong
    outcome."""
    wrong = TARGETS[rng.integers(0, len(blemore.OUTCOMES), len(outcomes))]
    noise = rng.dirichlet(np.ones(6), len(outcomes))
    right = 0.85 * TARGETS[outcomes] + 0.15 * noise
    unsure = 0.25 * wrong + 0.75 * np.full((len(outcomes), 6), 1 / 6)
    return np.where(knows[:, None], right, unsure)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A dataset's label table and three member runs (two complementary, one noise)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("ensemble")
    rng = np.random.default_rng(0)
    outcomes = rng.integers(0, len(blemore.OUTCOMES), TRAIN + TEST)
    clip_ids = [f"clip_{i:04d}" for i in range(TRAIN)] + [f"test_{i:04d}" for i in range(TEST)]
    folds = np.arange(TRAIN + TEST) % blemore.NUM_FOLDS
    dataset = root / "blemore"
    (dataset / "data").mkdir(parents=True)
    pq.write_table(pa.table({
        "clip_id": clip_ids, "split": ["train"] * TRAIN + ["test"] * TEST,
        "fold": pa.array([int(f) for f in folds[:TRAIN]] + [None] * TEST, pa.int8()),
        "outcome": pa.array([int(o) for o in outcomes[:TRAIN]] + [None] * TEST, pa.int64()),
    }), dataset / "data" / "train-00000-of-00001.parquet")

    half = rng.random(TRAIN + TEST) < 0.5
    probabilities = {
        "heads_a": _member_probabilities(outcomes, half, rng),
        "train_b": _member_probabilities(outcomes, ~half, rng),
        "noise": rng.dirichlet(np.ones(6), TRAIN + TEST),
    }
    train, test = slice(0, TRAIN), slice(TRAIN, None)
    for name in ("heads_a", "noise"):  # `blemore heads` layout
        write_probabilities(root / name / "oof_probabilities.csv", clip_ids[train], probabilities[name][train],
                            outcomes[train])
        write_probabilities(root / name / "test_probabilities.csv", clip_ids[test], probabilities[name][test])
    for fold in range(blemore.NUM_FOLDS):  # `blemore train --fold all` layout
        rows = np.flatnonzero(folds[train] == fold)
        write_probabilities(root / "train_b" / f"fold{fold}" / "validation_probabilities.csv",
                            [clip_ids[i] for i in rows], probabilities["train_b"][rows], outcomes[rows])
    write_probabilities(root / "train_b" / "test" / "probabilities.csv", clip_ids[test],
                        probabilities["train_b"][test])
    return {"root": root, "dataset": dataset, "outcomes": outcomes, "folds": folds, "clip_ids": clip_ids,
            "probabilities": probabilities}


def test_fit_weights_stays_on_the_simplex_and_finds_the_informative_member():
    rng = np.random.default_rng(1)
    outcomes = rng.integers(0, len(blemore.OUTCOMES), 300)
    good = 0.9 * TARGETS[outcomes] + 0.1 / 6
    noise = rng.dirichlet(np.ones(6), 300)
    weights = ens.fit_weights(np.stack([noise, good]), TARGETS[outcomes])
    assert (weights >= 0).all() and weights.sum() == pytest.approx(1.0)
    assert weights[1] > 0.95
    assert ens.fit_weights(np.stack([good]), TARGETS[outcomes]).tolist() == [1.0]


def test_complementary_members_fuse_into_a_better_ensemble(runs, tmp_path):
    members = [ens.load_member(runs["root"] / name) for name in ("heads_a", "train_b", "noise")]
    labels = ens.read_dataset_labels(runs["dataset"])
    result = ens.ensemble(members, labels)
    report = result.report
    weights = report["weights"]
    assert all(w >= 0 for w in weights.values()) and sum(weights.values()) == pytest.approx(1.0)
    assert weights[members[2].name] < 0.1, weights
    ensemble_score = report["nested"]["pooled"]["score"]
    member_scores = {name: figures["score"] for name, figures in report["members_nested"].items()}
    assert ensemble_score > max(member_scores.values()) + 0.1, (ensemble_score, member_scores)

    # Nested: the weights that score fold k were fitted without fold k's clips.
    clips = sorted(members[0].oof)
    folds = np.array([labels[c][1] for c in clips])
    stacked = np.stack([np.stack([m.oof[c] for c in clips]) for m in members])
    targets = TARGETS[np.array([labels[c][2] for c in clips])]
    for fold in range(blemore.NUM_FOLDS):
        expected = ens.fit_weights(stacked[:, folds != fold], targets[folds != fold])
        np.testing.assert_allclose(list(report["fold_weights"][str(fold)].values()), expected)
        parameters = report["nested"]["folds"][fold]["parameters"]
        assert parameters["decoder"] == report["decoder"]
    # The reported nested figure is what decoding each fold with its own out-of-fold fit gives.
    decoded = np.empty(len(clips), dtype=np.int64)
    for fold in range(blemore.NUM_FOLDS):
        rows = folds == fold
        decoded[rows] = decode_outcomes(ens.fuse(np.array(list(report["fold_weights"][str(fold)].values())),
                                                 stacked[:, rows]), **report["nested"]["folds"][fold]["parameters"])
    truth = np.array([labels[c][2] for c in clips])
    assert outcome_scores(truth, decoded)["score"] == pytest.approx(ensemble_score)
    # Both decoders were evaluated and the better nested one chosen.
    choice = report["decoder_choice"]["nested"]
    assert set(choice) == {"thresholds", "expected_score"}
    assert choice[report["decoder"]]["pooled"]["score"] == max(c["pooled"]["score"] for c in choice.values())


def test_ensemble_command_writes_the_fused_test_submission(runs, tmp_path, capsys):
    from blemore_toolkit.cli import main

    output, submission = tmp_path / "fused", tmp_path / "submission.json"
    runs_dirs = [str(runs["root"] / name) for name in ("heads_a", "train_b", "noise")]
    assert main(["ensemble", *runs_dirs, "--dataset", str(runs["dataset"]), "--output", str(output),
                 "--submission", str(submission)]) == 0
    assert "ensemble" in capsys.readouterr().out
    report = json.loads((output / ens.ENSEMBLE_REPORT).read_text())
    weights = np.array([report["weights"][name] for name in runs_dirs])
    test_ids = runs["clip_ids"][TRAIN:]
    fused = ens.fuse(weights, np.stack([runs["probabilities"][n][TRAIN:] for n in ("heads_a", "train_b", "noise")]))
    written = json.loads(submission.read_text())["predictions"]
    expected = decode(fused, **report["decoding_parameters"])
    assert [written[f"{c}.mov"] for c in test_ids] == expected
    # The fused test predictions carry the members' complementary knowledge too.
    test_scores = outcome_scores(runs["outcomes"][TRAIN:], decode_outcomes(fused, **report["decoding_parameters"]))
    assert test_scores["score"] > 0.8


def test_ensemble_rejects_runs_that_do_not_match(runs, tmp_path, capsys):
    from blemore_toolkit.cli import main

    other = tmp_path / "other"
    write_probabilities(other / "oof_probabilities.csv", ["clip_0000"], np.full((1, 6), 1 / 6), [0])
    assert main(["ensemble", str(runs["root"] / "heads_a"), str(other), "--dataset", str(runs["dataset"])]) == 1
    assert "out-of-fold clips differ" in capsys.readouterr().err
    assert main(["ensemble", str(tmp_path), "--dataset", str(runs["dataset"])]) == 1
    assert "no oof_probabilities.csv" in capsys.readouterr().err


def test_a_single_run_gets_its_decoder_chosen_on_nested_figures(runs):
    member = ens.load_member(runs["root"] / "heads_a")
    report = ens.ensemble([member], ens.read_dataset_labels(runs["dataset"])).report
    assert report["weights"] == {member.name: 1.0}
    assert report["members_nested"][member.name] == pytest.approx(report["nested"]["pooled"])
    assert report["decoding_parameters"]["decoder"] == report["decoder"]


def test_label_columns_hold_what_the_label_dict_holds(runs):
    """``read_dataset_label_table`` (columns, looked up many clips at once) answers as ``read_dataset_labels``."""
    as_dict = ens.read_dataset_labels(runs["dataset"])
    table = ens.read_dataset_label_table(runs["dataset"])
    clips = list(as_dict)[::-1] + ["not_a_clip"]
    folds, outcomes = table.fold_outcome(clips)
    assert folds.tolist() == [as_dict[c][1] for c in clips[:-1]] + [-1]
    assert outcomes.tolist() == [as_dict[c][2] for c in clips[:-1]] + [-1]
    assert table.in_split(clips, "test").tolist() == [as_dict[c][0] == "test" for c in clips[:-1]] + [False]
    assert not table.in_split(clips, "validation").any()
    assert len(table) == len(as_dict) and dict(table.items()) == as_dict


def test_ensemble_on_label_columns_equals_ensemble_on_the_label_dict(runs):
    members = [ens.load_member(runs["root"] / name) for name in ("heads_a", "train_b")]
    on_dict = ens.ensemble(members, ens.read_dataset_labels(runs["dataset"]))
    on_table = ens.ensemble(members, ens.read_dataset_label_table(runs["dataset"]))
    assert on_table.report == on_dict.report
    np.testing.assert_array_equal(on_table.test_probabilities, on_dict.test_probabilities)


def test_ensemble_names_the_first_unlabelled_or_mislabelled_clip(runs, tmp_path):
    """With the labels as columns, a clip the dataset lacks or labels otherwise is still named in one line."""
    clips = runs["clip_ids"][:TRAIN]
    outcomes = runs["outcomes"][:TRAIN].copy()
    probabilities = runs["probabilities"]["heads_a"][:TRAIN]
    outcomes[7] = (outcomes[7] + 1) % len(blemore.OUTCOMES)
    write_probabilities(tmp_path / "relabelled" / "oof_probabilities.csv", clips, probabilities, outcomes)
    table = ens.read_dataset_label_table(runs["dataset"])
    with pytest.raises(blemore.BlemoreError, match=f"clip {clips[7]} is labelled .* there but .* in the dataset"):
        ens.ensemble([ens.load_member(tmp_path / "relabelled")], table)
    write_probabilities(tmp_path / "extra" / "oof_probabilities.csv", [*clips, "stranger"],
                        np.vstack([probabilities, np.full((1, 6), 1 / 6)]), None)
    with pytest.raises(blemore.BlemoreError, match="clip stranger has no labelled training row"):
        ens.ensemble([ens.load_member(tmp_path / "extra")], table)


def test_clip_rows_take_and_look_up_clips_without_a_dict_until_one_is_named():
    values = np.arange(12.0).reshape(4, 3)
    rows = ens.ClipRows(["d", "b", "a", "c"], values)
    np.testing.assert_array_equal(rows.take(["a", "d", "a"]), values[[2, 0, 2]])
    assert rows.keys_._index is None  # taking many clips at once builds no dict of them
    with pytest.raises(KeyError, match="zz"):
        rows.take(["a", "zz"])
    assert list(rows) == ["d", "b", "a", "c"] and len(rows) == 4
    np.testing.assert_array_equal(rows["c"], values[3])
    truth = ens.ClipRows(["d", "b", "a", "c"], np.array([5, 6, 7, 8]), keys=rows.keys_)
    assert truth.take(["c", "b"]).tolist() == [8, 6] and truth["a"] == 7
