"""The error-analysis report: its numbers against hand-made predictions, its files, and a report.html that embeds
every figure and loads nothing from elsewhere."""

import base64
import json
import re
import sys

import numpy as np
import pytest

import blemore
from blemore_toolkit.data.references import ReferenceClip
from blemore_toolkit.evaluation import report
from blemore_toolkit.evaluation.predictions import AlignedPredictions
from blemore_toolkit.evaluation.probabilities import write_probabilities
from blemore_toolkit.metrics.blemore import challenge

# (clip name, prediction): eight hand-made cases, each landing in a known cell.
CASES = [
    ("A1_hap_int1_ver1", [("hap", 100)]),                           # hap → hap
    ("A1_hap_int2_ver1", [("sad", 100)]),                           # hap → sad
    ("A1_mix_ang_hap_70_30_ver1", [("ang", 70), ("hap", 30)]),      # right, 70/30
    ("A2_mix_ang_hap_70_30_ver1", [("hap", 50), ("ang", 50)]),      # right pair, predicted 50/50
    ("A2_mix_ang_hap_30_70_ver1", [("hap", 100)]),                  # pair missed: presence hap, salience other
    ("A2_mix_ang_hap_50_50_ver1", [("ang", 60), ("hap", 40)]),      # right pair at no level: salience other
    ("A3_neu_sit2_ver1", [("ang", 50), ("hap", 25), ("sad", 25)]),  # three emotions: presence other
    ("A3_mix_fea_sad_50_50_ver1", [("sad", 50.0), ("fea", 50.0)]),  # right, given in reverse order
]
P = blemore.PRESENCE_NAMES.index


def aligned_cases(probabilities=None, thresholds=None):
    clips = []
    for name, _ in CASES:
        label = blemore.parse_clip_name(name)
        clips.append(ReferenceClip(name, label.emotions, label.salience, actor_id=label.actor_id,
                                   intensity=label.intensity, situation=label.situation))
    return AlignedPredictions("cases", clips, [prediction for _, prediction in CASES], 0, probabilities, thresholds)


def test_presence_confusion_counts_and_row_percentages():
    aligned = aligned_cases()
    confusion = report.presence_confusion(aligned.reference_pairs, aligned.predictions)
    counts = np.array(confusion["counts"])
    expected = np.zeros((16, 16), dtype=int)
    expected[P("hap"), P("hap")] = 1
    expected[P("hap"), P("sad")] = 1
    expected[P("ang+hap"), P("ang+hap")] = 3
    expected[P("ang+hap"), P("hap")] = 1
    expected[P("fea+sad"), P("fea+sad")] = 1
    assert (counts == expected).all()
    assert confusion["other"] == [1 if name == "neu" else 0 for name in blemore.PRESENCE_NAMES]
    assert confusion["row_percent"][P("ang+hap")][P("ang+hap")] == pytest.approx(75.0)
    assert confusion["row_percent"][P("hap")][P("sad")] == pytest.approx(50.0)
    assert confusion["other_percent"][P("neu")] == pytest.approx(100.0)
    assert np.isnan(confusion["row_percent"][P("ang")][P("ang")])  # no ang clip: undefined, not 0


def test_salience_confusion_per_pair_is_three_by_four():
    aligned = aligned_cases()
    confusion = report.salience_confusions(aligned.reference_pairs, aligned.predictions)
    assert confusion["rows"] == ["70/30", "50/50", "30/70"]
    assert confusion["columns"] == ["70/30", "50/50", "30/70", "other"]
    assert confusion["by_pair"]["ang+hap"] == [[1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]]
    assert confusion["by_pair"]["fea+sad"] == [[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    assert sum(map(sum, confusion["by_pair"]["ang+disg"])) == 0


def test_per_emotion_precision_recall_and_levels():
    aligned = aligned_cases()
    per_emotion = report.emotion_precision_recall(aligned.reference_pairs, aligned.predictions)
    assert per_emotion["hap"] == {"precision": 5 / 6, "recall": 5 / 6, "n_true": 6, "n_predicted": 6, "n_both": 5}
    assert per_emotion["sad"]["precision"] == pytest.approx(1 / 3) and per_emotion["sad"]["recall"] == 1.0
    assert per_emotion["neu"]["precision"] is None and per_emotion["neu"]["recall"] == 0.0
    levels = report.accuracy_by_level(aligned, aligned.correctness())
    assert levels["intensity"] == {"1": {"n_clips": 1, "acc_presence": 1.0}, "2": {"n_clips": 1, "acc_presence": 0.0}}
    assert levels["situation"] == {"2": {"n_clips": 1, "acc_presence": 0.0}}


def test_report_scores_are_the_challenges_with_an_actor_interval():
    aligned = aligned_cases()
    data = report.report_data(aligned, resamples=200)
    expected = challenge.challenge_scores(aligned.reference_pairs, aligned.predictions)
    for key in challenge.METRICS:
        assert data["scores"][key] == pytest.approx(expected[key])
    assert data["scores"]["ci_method"] == "actor bootstrap" and data["scores"]["n_clusters"] == 3


def random_probabilities(rng, outcomes, noise=0.5):
    targets = np.array([blemore.soft_target(blemore.OUTCOMES[o].emotions, blemore.OUTCOMES[o].salience)
                        for o in outcomes])
    return (1 - noise) * targets + noise * rng.dirichlet(np.ones(6), len(outcomes))


def test_threshold_grid_cells_are_the_challenge_scores_of_that_decoding():
    from blemore_toolkit.modeling.decoding_blemore import decode

    rng = np.random.default_rng(0)
    outcomes = rng.integers(0, 36, 200)
    probabilities = random_probabilities(rng, outcomes)
    grid = report.threshold_grid(probabilities, outcomes)
    assert len(grid["alpha"]) == len(grid["beta"]) == 51
    references = [blemore.OUTCOMES[o].as_prediction() for o in outcomes]
    for i, j in ((0, 0), (15, 20), (50, 7)):
        alpha, beta = grid["alpha"][i], grid["beta"][j]
        expected = challenge.challenge_scores(references, decode(probabilities, presence_threshold=alpha,
                                                                 salience_threshold=beta))
        for key in challenge.METRICS:
            assert grid[key][i][j] == pytest.approx(expected[key])


def test_calibration_bins_by_hand():
    references = [[("ang", 100)], [("ang", 70), ("hap", 30)]]
    probabilities = np.array([[0.95, 0.01, 0.01, 0.01, 0.01, 0.01], [0.65, 0.0, 0.0, 0.35, 0.0, 0.0]])
    cal = report.calibration(probabilities, references)
    assert sum(cal["count"]) == 12 and cal["count"][0] == 9
    assert cal["mean_share"][9] == 1.0 and cal["mean_predicted"][9] == pytest.approx(0.95)
    assert cal["mean_share"][6] == 0.7 and cal["mean_share"][3] == 0.3 and cal["presence_rate"][3] == 1.0
    assert cal["mean_share"][0] == 0.0 and cal["mean_predicted"][5] is None
    # Gaps: bin 0 predicts 0.05 in all over its 9 values against a share of 0; bins 3, 6 and 9 are each 0.05 off.
    assert cal["ece"] == pytest.approx((0.05 + 0.05 + 0.05 + 0.05) / 12)


def test_pca_standardises_per_actor():
    rng = np.random.default_rng(1)
    outcomes = np.tile(np.arange(36), 6)
    actors = np.repeat([f"A{i}" for i in range(6)], 36)
    signal = np.array([blemore.soft_target(blemore.OUTCOMES[o].emotions, blemore.OUTCOMES[o].salience)
                       for o in outcomes])
    features = np.concatenate([signal, np.zeros((len(outcomes), 4))], axis=1) + 0.05 * rng.normal(size=(216, 10))
    plain = report.pair_projections(features, actors, outcomes)
    offset = features * np.repeat(rng.uniform(0.5, 3, 6), 36)[:, None] + np.repeat(rng.normal(0, 50, (6, 10)), 36,
                                                                                      axis=0)
    shifted = report.pair_projections(offset, actors, outcomes)
    for pair in plain:
        assert np.abs(np.array(plain[pair]["points"])).sum() == pytest.approx(
            np.abs(np.array(shifted[pair]["points"])).sum(), rel=1e-6)  # same up to the axes' signs
    ang_hap = plain["ang+hap"]
    assert sorted(set(ang_hap["groups"])) == ["30/70", "50/50", "70/30", "ang", "hap"]
    groups, points = np.array(ang_hap["groups"]), np.array(ang_hap["points"])
    first_axis = {g: points[groups == g, 0].mean() for g in ("ang", "70/30", "50/50", "30/70", "hap")}
    order = sorted(first_axis, key=first_axis.get)
    assert order in (["ang", "70/30", "50/50", "30/70", "hap"], ["hap", "30/70", "50/50", "70/30", "ang"])


# ---------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------


EXTERNAL = re.compile(r"https?:|//|<script|<link|<iframe|@import|url\(", re.I)


def test_report_command_writes_every_file_and_a_self_contained_page(tmp_path, capsys):
    clips = [c for c, e in blemore.load_manifest().items() if e.split == "train" and e.fold == 1]
    rng = np.random.default_rng(2)
    outcomes = [blemore.parse_clip_name(c).outcome for c in clips]
    write_probabilities(tmp_path / "probabilities.csv", clips, random_probabilities(rng, outcomes))
    out = tmp_path / "report"
    code = blemore.main(["report", str(tmp_path / "probabilities.csv"), "-r",
                         str(blemore.reference_path("blemore_manifest.csv")), "--split", "fold1", "-o", str(out),
                         "--thresholds", "0.15", "0.2", "--resamples", "300"])
    stdout = capsys.readouterr().out
    assert code == 0 and f"report: {out / 'report.html'}" in stdout
    figures = ["scores.png", "presence_confusion.png", "salience_confusion.png", "per_emotion.png",
               "threshold_grid.png", "calibration.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted(figures + ["report.html", "report.json"])
    page = (out / "report.html").read_text()
    for name in figures:
        png = (out / name).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
        assert f"data:image/png;base64,{base64.b64encode(png).decode()}" in page
    assert page.count("<img ") == len(figures)
    assert all(src.startswith("data:") for src in re.findall(r'src="([^"]*)"', page))
    assert not EXTERNAL.search(re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page))
    data = json.loads((out / "report.json").read_text())
    assert data["thresholds"] == {"presence_threshold": 0.15, "salience_threshold": 0.2}
    assert data["n_clips"] == len(clips) and sum(map(sum, data["presence_confusion"]["counts"])) + sum(
        data["presence_confusion"]["other"]) == len(clips)


def test_pca_figure_is_written_and_embedded(tmp_path):
    rng = np.random.default_rng(3)
    outcomes = np.tile(np.arange(36), 3)
    data = report.report_data(aligned_cases(), resamples=50, features={
        "name": "toy", "matrix": rng.normal(size=(108, 8)), "actors": np.repeat(["A1", "A2", "A3"], 36),
        "outcomes": outcomes})
    written = report.write_report(data, tmp_path)
    assert "pca.png" in written and "threshold_grid.png" not in written  # no probabilities: no α/β grid
    assert base64.b64encode((tmp_path / "pca.png").read_bytes()).decode() in (tmp_path / "report.html").read_text()


def test_without_matplotlib_the_report_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(blemore.BlemoreError, match=r"pip install 'blemore\[report\]'"):
        report.write_report(report.report_data(aligned_cases(), resamples=20), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_report_command_with_a_features_config_adds_the_pca(prepared_dataset, tmp_path, capsys):
    """A features config written as ``blemore features`` writes it (label-bearing numbers plus noise), and a
    perfect submission of the train clips: ``report --features`` adds pca.png, embedded in the page."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from blemore_toolkit.features.configs import FEATURES_DIR, PROVENANCE_FILE, feature_columns, register_config
    from blemore_toolkit.features.extraction import aggregate

    dataset = tmp_path / "blemore"
    shutil.copytree(prepared_dataset, dataset)
    rng = np.random.default_rng(4)
    columns = ["clip_id", "split", "fold", "outcome", "soft_target", "presence"]
    features = feature_columns(6)
    truth = {}
    for shard in sorted((dataset / "data").glob("*.parquet")):
        rows = pq.read_table(shard, columns=columns).to_pylist()
        records = []
        for row in rows:
            target = np.array(row["soft_target"] or [0.0] * 6)
            sequence = target[None, :] + 0.1 * rng.normal(size=(4, 6))
            records.append(features.encode_example({**row, "features": aggregate(sequence), "sequence": sequence,
                                                    "num_windows": 4}))
            if row["split"] == "train":
                truth[row["clip_id"]] = blemore.OUTCOMES[row["outcome"]].as_prediction()
        (dataset / FEATURES_DIR / "toy").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(records, schema=features.arrow_schema),
                       dataset / FEATURES_DIR / "toy" / shard.name)
    (dataset / FEATURES_DIR / "toy" / PROVENANCE_FILE).write_text(json.dumps(
        {"config_name": "toy", "encoder": "labels plus noise", "kind": "hand-built"}))
    register_config(dataset, "toy", 6)
    submission = tmp_path / "perfect.json"
    submission.write_text(json.dumps({"predictions": {f"{clip}.mov": p for clip, p in truth.items()}}))
    out = tmp_path / "report"
    assert blemore.main(["report", str(submission), "-r", str(dataset), "--split", "train", "-o", str(out),
                         "--features", "toy", "--dataset", str(dataset), "--resamples", "100"]) == 0
    capsys.readouterr()
    data = json.loads((out / "report.json").read_text())
    assert data["scores"]["score"] == 1.0 and data["pca"]["features"] == "toy"
    assert sum(len(p["groups"]) for p in data["pca"]["pairs"].values()) > 0
    page = (out / "report.html").read_text()
    assert base64.b64encode((out / "pca.png").read_bytes()).decode() in page
