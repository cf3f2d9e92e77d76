"""Intervals and paired comparisons (``blemore_toolkit.evaluation.statistics``) on simulated data whose truth is
known, their agreement with the challenge's arithmetic, and the ``score --ci`` and ``compare`` commands."""

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest

import blemore
from blemore_toolkit.evaluation import statistics
from blemore_toolkit.evaluation.probabilities import write_probabilities
from blemore_toolkit.evaluation.statistics import ClipCorrectness
from blemore_toolkit.metrics.blemore import challenge

POPULATION_MEAN, ACTOR_SPREAD = 0.6, 0.15


def simulate(rng, n_actors, clips_per_actor=54, spread=ACTOR_SPREAD, actor_p=None):
    """Clips of actors whose accuracies scatter around a population mean: presence right with the actor's
    probability, half the clips blends, salience right with 0.8 times it."""
    if actor_p is None:
        actor_p = np.clip(rng.normal(POPULATION_MEAN, spread, n_actors), 0.02, 0.98)
    actors = np.repeat(np.arange(n_actors), clips_per_actor)
    presence = rng.random(len(actors)) < actor_p[actors]
    blend = rng.random(len(actors)) < 0.5
    salience = blend & (rng.random(len(actors)) < 0.8 * actor_p[actors])
    return ClipCorrectness(presence, salience, blend), [f"A{a}" for a in actors]


def population_truth(spread=ACTOR_SPREAD):
    """The metrics' expected values over actors drawn as in ``simulate`` (equal clips per actor)."""
    mean_p = np.clip(np.random.default_rng(123).normal(POPULATION_MEAN, spread, 2_000_000), 0.02, 0.98).mean()
    return np.array([mean_p, 0.8 * mean_p, 0.9 * mean_p])


def width(interval, metric="acc_presence"):
    low, high = interval["ci"][metric]
    return high - low


# ---------------------------------------------------------------------------------------------------------------
# Agreement with the challenge's arithmetic
# ---------------------------------------------------------------------------------------------------------------


def random_clips(rng, n):
    references = [blemore.OUTCOMES[i].as_prediction() for i in rng.integers(0, 36, n)]
    predictions = [blemore.OUTCOMES[i].as_prediction() if rng.random() < 0.5 else r
                   for i, r in zip(rng.integers(0, 36, n), references)]
    return references, predictions


def test_correctness_and_summary_are_the_challenges():
    references, predictions = random_clips(np.random.default_rng(0), 300)
    correctness = ClipCorrectness.from_clips(references, predictions)
    expected = challenge.challenge_scores(references, predictions)
    summary = correctness.summary()
    for key in statistics.METRICS:
        assert summary[key] == pytest.approx(expected[key])
    assert correctness.blend.sum() == expected["n_blends"]


def test_each_resample_is_the_challenge_score_of_the_drawn_actors_clips():
    rng = np.random.default_rng(1)
    references, predictions = random_clips(rng, 120)
    actors = [f"A{i % 7}" for i in range(120)]
    correctness = ClipCorrectness.from_clips(references, predictions)
    clusters, method = statistics.cluster_codes(actors, 120)
    assert method == statistics.ACTOR_BOOTSTRAP
    samples = statistics.bootstrap_samples(correctness, clusters, resamples=25, seed=5)
    draws = np.random.default_rng(5).integers(0, 7, size=(25, 7))  # the draws the bootstrap makes for this seed
    for row, drawn in zip(samples, draws):
        rows = [i for k in drawn for i in np.flatnonzero(clusters == k)]
        expected = challenge.challenge_scores([references[i] for i in rows], [predictions[i] for i in rows])
        assert row == pytest.approx([expected[key] for key in statistics.METRICS], nan_ok=True)


def test_actors_come_from_names_and_anonymised_names_fall_back_to_clips():
    assert statistics.actors_of(["A102_ang_int1_ver1", "A411_mix_ang_hap_30_70_ver1", "test_0001"]) == \
        ["A102", "A411", None]
    correctness = ClipCorrectness.from_clips([[("hap", 100)]] * 4, [[("hap", 100)]] * 4)
    assert statistics.bootstrap_interval(correctness, ["A1", "A1", "A2", None])["ci_method"] == "clip bootstrap"
    assert statistics.bootstrap_interval(correctness, ["A1", "A1", "A2", "A2"])["ci_method"] == "actor bootstrap"


# ---------------------------------------------------------------------------------------------------------------
# Intervals on simulated data
# ---------------------------------------------------------------------------------------------------------------


def test_95_percent_intervals_cover_the_true_accuracies_with_eleven_actors():
    """200 simulated test sets of 11 actors (the size of BLEMORE's test set): at least 90 % of the 95 % intervals
    hold the population's accuracies (measured: 92–95 %). A clip bootstrap here covers about 60 %."""
    rng = np.random.default_rng(2026)
    truth = population_truth()
    covered = np.zeros(3)
    clip_covered = 0
    for experiment in range(200):
        correctness, actors = simulate(rng, n_actors=11)
        interval = statistics.bootstrap_interval(correctness, actors, resamples=1000, seed=experiment)
        covered += [low <= t <= high for t, (low, high) in zip(truth, interval["ci"].values())]
        low, high = statistics.bootstrap_interval(correctness, None, resamples=200, seed=experiment)["ci"][
            "acc_presence"]
        clip_covered += low <= truth[0] <= high
    assert (covered / 200 >= 0.90).all(), covered / 200
    assert clip_covered / 200 < 0.8  # ignoring the actors would be overconfident


def test_clustering_widens_intervals_when_actors_differ():
    rng = np.random.default_rng(3)
    differing, actors = simulate(rng, n_actors=20, spread=0.2)
    clustered = statistics.bootstrap_interval(differing, actors, seed=0)
    by_clip = statistics.bootstrap_interval(differing, None, seed=0)
    assert by_clip["ci_method"] == "clip bootstrap"
    assert width(clustered) > 1.8 * width(by_clip)
    # Actors that do not differ: the actor bootstrap is about as wide as the clip bootstrap.
    alike, actors = simulate(rng, n_actors=20, actor_p=np.full(20, 0.6))
    ratio = width(statistics.bootstrap_interval(alike, actors, seed=0)) / width(
        statistics.bootstrap_interval(alike, None, seed=0))
    assert 0.7 < ratio < 1.4


def test_intervals_are_deterministic_by_seed_and_hold_the_estimate():
    correctness, actors = simulate(np.random.default_rng(4), n_actors=10)
    first = statistics.bootstrap_interval(correctness, actors, resamples=500, seed=7)
    assert statistics.bootstrap_interval(correctness, actors, resamples=500, seed=7) == first
    assert statistics.bootstrap_interval(correctness, actors, resamples=500, seed=8)["ci"] != first["ci"]
    estimate = correctness.summary()
    for key, (low, high) in first["ci"].items():
        assert 0 <= low < estimate[key] < high <= 1


def test_no_blend_means_no_salience_interval():
    correctness = ClipCorrectness.from_clips([[("hap", 100)], [("sad", 100)]] * 5, [[("hap", 100)]] * 10)
    result = statistics.bootstrap_interval(correctness, None, resamples=100)
    assert result["ci"]["acc_salience"] == [None, None]
    assert result["ci"]["acc_presence"][0] < 0.5 < result["ci"]["acc_presence"][1]


def test_bad_options_are_one_line_errors():
    correctness = ClipCorrectness.from_clips([[("hap", 100)]], [[("hap", 100)]])
    with pytest.raises(blemore.BlemoreError, match="resamples"):
        statistics.bootstrap_interval(correctness, resamples=0)
    with pytest.raises(blemore.BlemoreError, match="level"):
        statistics.bootstrap_interval(correctness, level=95)


def test_students_t_quantile_matches_tables():
    for degrees, table in ((1, 12.706), (2, 4.303), (3, 3.182), (5, 2.571), (10, 2.228), (57, 2.002)):
        assert statistics.student_t_quantile(0.975, degrees) == pytest.approx(table, rel=0.01)


# ---------------------------------------------------------------------------------------------------------------
# Paired comparison
# ---------------------------------------------------------------------------------------------------------------


def paired(rng, n_actors, shift=0.0):
    """A and B on the same clips; B's per-actor accuracy is A's minus ``shift`` (0: exchangeable)."""
    actor_p = np.clip(rng.normal(POPULATION_MEAN, ACTOR_SPREAD, n_actors), 0.05, 0.95)
    a, actors = simulate(rng, n_actors, actor_p=actor_p)
    p_b = np.repeat(np.clip(actor_p - shift, 0.0, 1.0), len(a) // n_actors)
    presence_b = rng.random(len(a)) < p_b
    salience_b = a.blend & (rng.random(len(a)) < 0.8 * p_b)
    return a, ClipCorrectness(presence_b, salience_b, a.blend), actors


def test_p_values_are_uniform_under_the_null_and_small_under_a_real_difference():
    rng = np.random.default_rng(5)
    null = np.array([list(statistics.paired_comparison(*paired(rng, 20), resamples=499, seed=i)["p_value"].values())
                     for i in range(200)])
    for column in null.T:
        assert np.mean(column < 0.05) <= 0.10
        assert 0.35 <= np.mean(column < 0.5) <= 0.65
        assert 0.10 <= np.mean(column < 0.2) <= 0.30
    real = [statistics.paired_comparison(*paired(rng, 20, shift=0.15), resamples=499, seed=i)
            for i in range(20)]
    assert np.median([r["p_value"]["score"] for r in real]) < 0.01
    assert all(r["difference"]["acc_presence"] > 0 for r in real)
    assert np.mean([r["ci"]["score"][0] > 0 for r in real]) > 0.8


def test_exact_sign_flip_p_value_by_hand():
    """Three actors whose presence-right counts differ (A − B) by +2, +1 and −1 clips: of the eight sign patterns,
    the sums are ±2, ±4, ±2 and 0 twice, so 6 of 8 are at least as extreme as the observed 2."""
    references = [[("hap", 100)]] * 18
    a_right = [1, 1, 1, 0, 0, 0] + [1, 0, 0, 0, 0, 0] + [0, 0, 0, 0, 0, 0]
    b_right = [0, 0, 0, 1, 0, 0] + [0, 0, 0, 0, 0, 0] + [1, 0, 0, 0, 0, 0]
    a = ClipCorrectness.from_clips(references, [[("hap", 100)] if r else [("sad", 100)] for r in a_right])
    b = ClipCorrectness.from_clips(references, [[("hap", 100)] if r else [("sad", 100)] for r in b_right])
    actors = [f"A{i // 6}" for i in range(18)]
    result = statistics.paired_comparison(a, b, actors, resamples=100)
    d = np.array([2, 1, -1])
    brute = np.mean([abs(np.dot(s, d)) >= 2 for s in itertools.product([-1, 1], repeat=3)])
    assert result["p_value"]["acc_presence"] == pytest.approx(brute) == 0.75
    assert result["difference"]["acc_presence"] == pytest.approx(2 / 18)
    assert "all 2^3 patterns" in result["p_value_method"]
    assert result["p_value"]["acc_salience"] is None  # no blend clip


def test_comparing_a_submission_with_itself():
    a, _, actors = paired(np.random.default_rng(6), 8)
    result = statistics.paired_comparison(a, a, actors, seed=1)
    assert result["difference"] == {key: 0.0 for key in statistics.METRICS}
    assert result["p_value"]["score"] == 1.0
    assert result["ci"]["score"] == [0.0, 0.0]


# ---------------------------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------------------------


FOLD0 = [clip for clip, entry in blemore.load_manifest().items() if entry.split == "train" and entry.fold == 0]


def write_submission(path, rng, p_right, clips=FOLD0, key=lambda clip: clip):
    predictions = {}
    for clip in clips:
        outcome = blemore.parse_clip_name(clip).outcome if rng.random() < p_right else int(rng.integers(36))
        predictions[f"{key(clip)}.mov"] = blemore.OUTCOMES[outcome].as_prediction()
    path.write_text(json.dumps({"predictions": predictions}))
    return path


def run_cli(capsys, *argv):
    code = blemore.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_score_ci_resamples_actors_of_the_manifest(tmp_path, capsys):
    submission = write_submission(tmp_path / "a.json", np.random.default_rng(0), 0.6)
    manifest = str(blemore.reference_path("blemore_manifest.csv"))
    code, out, _ = run_cli(capsys, "score", str(submission), "-r", manifest, "--split", "fold0", "--ci",
                           "--seed", "3", "--resamples", "800")
    result = json.loads(out)
    assert code == 0 and result["ci_method"] == "actor bootstrap" and result["ci_level"] == 0.95
    assert result["n_clusters"] == len({blemore.parse_clip_name(c).actor_id for c in FOLD0})
    for key in ("acc_presence", "acc_salience", "score"):
        assert result["ci"][key][0] < result[key] < result["ci"][key][1]
    assert run_cli(capsys, "score", str(submission), "-r", manifest, "--split", "fold0", "--ci", "--seed", "3",
                   "--resamples", "800")[1] == out
    code, out, _ = run_cli(capsys, "score", str(submission), "-r", manifest, "--split", "fold0")
    assert "ci" not in json.loads(out)


def write_anonymised(tmp_path, actor_column):
    """Anonymised test names (test_0001 …) with an answer key, mapping each to its actor in ``actor_column``."""
    names = {clip: f"test_{i + 1:04d}" for i, clip in enumerate(FOLD0)}
    lines = ["filename,emotion_1,emotion_2,emotion_1_salience,emotion_2_salience" +
             (f",{actor_column}" if actor_column else "")]
    for clip, name in names.items():
        label = blemore.parse_clip_name(clip)
        cells = [f"{name}.mov", label.emotions[0], label.emotions[1] if label.is_blend else "",
                 str(label.salience[0]) if label.is_blend else "", str(label.salience[1]) if label.is_blend else ""]
        lines.append(",".join(cells + ([label.actor_id] if actor_column else [])))
    key = tmp_path / f"key_{actor_column}.csv"
    key.write_text("\n".join(lines) + "\n")
    return key, names


@pytest.mark.parametrize("actor_column", ["actor_id", "video_id", None])  # video_id: the organisers' column
def test_anonymised_names_take_actors_from_a_mapping_column_or_say_clip_bootstrap(tmp_path, capsys, actor_column):
    key, names = write_anonymised(tmp_path, actor_column)
    submission = write_submission(tmp_path / "s.json", np.random.default_rng(1), 0.5, key=names.get)
    code, out, err = run_cli(capsys, "score", str(submission), "-r", str(key), "--ci")
    result = json.loads(out)
    assert code == 0
    if actor_column:
        assert result["ci_method"] == "actor bootstrap" and result["n_clusters"] == 10 and not err
    else:
        assert result["ci_method"] == "clip bootstrap" and result["n_clusters"] == len(FOLD0)
        assert "resample clips" in err


def test_compare_submissions_and_probabilities(tmp_path, capsys):
    rng = np.random.default_rng(2)
    a = write_submission(tmp_path / "a.json", rng, 0.7)
    b = write_submission(tmp_path / "b.json", rng, 0.4)
    manifest = str(blemore.reference_path("blemore_manifest.csv"))
    code, out, _ = run_cli(capsys, "compare", str(a), str(b), "-r", manifest, "--split", "fold0")
    result = json.loads(out)
    assert code == 0
    assert set(result["difference"]) == set(result["ci"]) == set(result["p_value"]) == set(statistics.METRICS)
    assert result["difference"]["score"] == pytest.approx(result["a"]["score"] - result["b"]["score"])
    assert result["difference"]["score"] > 0.15 and result["p_value"]["score"] < 0.01
    assert result["a"]["file"] == str(a)

    # The same predictions as probabilities, decoded with thresholds stored in a model's config.json: no difference.
    outcomes = [blemore.outcome_index(*zip(*[(e["emotion"], e["salience"]) for e in clip]))
                for clip in json.loads(a.read_text())["predictions"].values()]
    write_probabilities(tmp_path / "probabilities.csv", FOLD0,
                        np.array([blemore.soft_target(*blemore.canonical_label(
                            blemore.OUTCOMES[o].emotions, blemore.OUTCOMES[o].salience)) for o in outcomes]))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"decoding_rule": "thresholds", "presence_threshold": 0.2,
                                                   "salience_threshold": 0.1}))
    code, out, _ = run_cli(capsys, "compare", str(a), str(tmp_path / "probabilities.csv"), "-r", manifest,
                           "--split", "fold0", "--model-b", str(model))
    assert code == 0 and json.loads(out)["difference"] == {key: 0.0 for key in statistics.METRICS}
    code, _, err = run_cli(capsys, "compare", str(a), str(tmp_path / "probabilities.csv"), "-r", manifest,
                           "--split", "fold0")
    assert code == 1 and "--thresholds" in err and len(err.strip().splitlines()) == 1
    fewer = write_submission(tmp_path / "fewer.json", rng, 0.5, clips=FOLD0[:-1])
    code, _, err = run_cli(capsys, "compare", str(a), str(fewer), "-r", manifest, "--split", "fold0")
    assert code == 1 and FOLD0[-1] in err


def test_scoring_with_intervals_loads_no_heavy_library(tmp_path):
    submission = write_submission(tmp_path / "a.json", np.random.default_rng(0), 0.6)
    manifest = str(blemore.reference_path("blemore_manifest.csv"))
    code = ("import sys, blemore; blemore.main(['score', sys.argv[1], '-r', sys.argv[2], '--split', 'fold0', "
            "'--ci']); heavy = [m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules]; "
            "print('heavy:', heavy, file=sys.stderr)")
    run = subprocess.run([sys.executable, "-c", code, str(submission), manifest], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert '"ci_method": "actor bootstrap"' in run.stdout
    assert "heavy: []" in run.stderr
