"""Memory and work that grow with the number of clips only linearly, with a small constant: what lets compare,
report and ensemble run on a million clips (``benchmarks/bench_scale.py`` measures the commands)."""

from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path

import numpy as np

from blemore_toolkit.evaluation import statistics, tuning
from blemore_toolkit.features import ensemble


def _peak_mb(function, *args, **kwargs) -> tuple[object, float]:
    tracemalloc.start()
    try:
        result = function(*args, **kwargs)
        return result, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_the_threshold_search_makes_no_array_of_every_beta_times_every_clip():
    rng = np.random.default_rng(0)
    n = 200_000
    probabilities, truth = rng.dirichlet(np.full(6, 0.5), n), rng.integers(0, 36, n)
    _, peak = _peak_mb(tuning.tune_thresholds, probabilities, truth)
    # three (51, n) int64 arrays were 245 MB here; the search now holds a few (n,) arrays at a time
    assert peak < 60, f"{peak:.0f} MB"


def test_the_threshold_search_is_unchanged_on_ties_and_degenerate_clips():
    """The counting search against decoding every (α, β) with ``threshold_outcomes`` and scoring it."""
    from blemore_toolkit.modeling.decoding_blemore import threshold_outcomes

    rng = np.random.default_rng(1)
    for trial in range(30):
        n = int(rng.integers(5, 80))
        probabilities = rng.dirichlet(np.full(6, 0.7), n)
        if trial % 2:
            probabilities = np.round(probabilities * 20) / 20  # probabilities and differences on the grid
        probabilities[: n // 4, 2] = 0
        truth = rng.integers(0, 36, n)
        grid = tuning.PAPER_GRID if trial % 3 == 0 else tuning.TOOLKIT_GRID
        found = tuning.tune_thresholds(probabilities, truth, grid=grid)
        best = max(tuning.outcome_scores(truth, threshold_outcomes(probabilities, a, b))["score"]
                   for a in grid.presence for b in grid.salience)
        decoded = threshold_outcomes(probabilities, found.presence_threshold, found.salience_threshold)
        scores = tuning.outcome_scores(truth, decoded)
        assert abs(found.score - best) < 1e-12 or (np.isnan(found.score) and np.isnan(best))
        assert scores["acc_presence"] == found.acc_presence


def test_bootstrap_chunks_stay_small_for_a_million_clusters_and_give_the_same_draws():
    rng = np.random.default_rng(0)
    chunk = next(statistics.resampled_counts(1_000_000, 50, rng))
    assert chunk.size <= statistics._CHUNK_CELLS
    n = 9_000  # above the size at which chunks shrink
    a = statistics.ClipCorrectness(rng.random(n) < 0.5, rng.random(n) < 0.3, rng.random(n) < 0.8)
    b = statistics.ClipCorrectness(rng.random(n) < 0.5, rng.random(n) < 0.3, a.blend)
    small = statistics.paired_comparison(a, b, resamples=900, seed=2)
    cells, statistics._CHUNK_CELLS = statistics._CHUNK_CELLS, 10**12
    try:
        large = statistics.paired_comparison(a, b, resamples=900, seed=2)
    finally:
        statistics._CHUNK_CELLS = cells
    assert small == large


def test_ensemble_weights_match_the_full_gradient_descent():
    """The two-column descent against the plain exponentiated gradient on all six columns, 2000 steps."""
    rng = np.random.default_rng(3)
    n = 4_000
    outcomes = rng.integers(0, 36, n)
    targets = ensemble.TARGETS[outcomes]
    members = np.stack([0.3 * targets + 0.7 * rng.dirichlet(np.ones(6), n) for _ in range(3)])
    weights = np.full(3, 1 / 3)
    clipped = np.clip(members, 1e-9, None)
    for _ in range(2000):
        fused = np.einsum("m,mne->ne", weights, clipped)
        gradient = -np.einsum("ne,mne->m", targets / fused, clipped) / n
        weights = weights * np.exp(-(gradient - gradient.min()))
        weights /= weights.sum()
    assert np.abs(ensemble.fit_weights(members, targets) - weights).max() < 1e-9


def test_the_scale_benchmark_runs(tmp_path):
    """``benchmarks/bench_scale.py`` on a few hundred rows: every command exits 0."""
    import subprocess

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_scale.py"
    done = subprocess.run([sys.executable, str(script), "--rows", "300"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines()[1:] if line.strip()]
    assert len(lines) == 4 and all("exit" not in line for line in lines), done.stdout


def test_a_probabilities_file_is_read_without_a_four_byte_a_character_copy_of_its_text(tmp_path):
    """``read_probabilities`` decodes the file as it parses (line endings \\n, \\r\\n or \\r, a BOM, a quoted clip
    id with a comma read as before) and its peak allocation stays under six times the file: a StringIO of the
    whole text alone would hold four bytes a character."""
    import tracemalloc

    from blemore_toolkit.evaluation.probabilities import read_probabilities, write_probabilities

    rng = np.random.default_rng(3)
    n = 20_000
    clip_ids = [f"A{i % 97:03d}_clip_{i:06d}" for i in range(n)]
    clip_ids[5] = "with,comma"
    probabilities = rng.dirichlet(np.ones(6), n)
    path = write_probabilities(tmp_path / "p.csv", clip_ids, probabilities, rng.integers(0, 36, n))
    expected = read_probabilities(path)
    text = path.read_bytes()
    for ending in (b"\r\n", b"\r"):
        other = tmp_path / f"p{len(ending)}.csv"
        other.write_bytes(b"\xef\xbb\xbf" + text.replace(b"\r\n", b"\n").replace(b"\n", ending))
        ids, values, truth = read_probabilities(other)
        assert ids == expected[0] and ids[5] == "with,comma"
        np.testing.assert_array_equal(values, expected[1])
        np.testing.assert_array_equal(truth, expected[2])
    tracemalloc.start()
    read_probabilities(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 6 * len(text), (peak, len(text))  # 8.1 times with a StringIO of the text, 4.1 without
