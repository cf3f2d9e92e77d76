"""The error-analysis report: where a model's predictions go wrong, as figures and one self-contained HTML page.

``report_data`` computes every number (plain numpy, no plotting): the scores with their actor-bootstrap intervals,
the 16 × 16 presence confusion over the composite labels (six singles, ten pairs) with an ``other`` column, per
blend pair the 3 × 4 salience confusion (true 70/30, 50/50, 30/70 × predicted 70/30, 50/50, 30/70, other), per
emotion the presence precision and recall, accuracy per intensity level and per neutral situation where the
references have them, and with probabilities the α/β grid of both accuracies and the score, and the reliability of
the six probabilities. ``write_report`` draws them with matplotlib (Agg backend, imported only here and only when
called: ``pip install 'blemore[report]'``) into PNG files and ``report.html``, which embeds every figure as a
base64 data URI and loads nothing from anywhere else, so it opens offline and can be mailed as one file.

The per-clip arithmetic is ``metrics.blemore.challenge`` (``challenge_details`` for the confusions,
``score_clips`` for the accuracies): the figures count exactly what ``blemore score`` counts.
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import blemore
from blemore_toolkit.data.atomic import write_bytes_atomically, write_text_atomically
from blemore_toolkit.evaluation import statistics
from blemore_toolkit.evaluation.predictions import AlignedPredictions
from blemore_toolkit.metrics.blemore import challenge

#: Salience levels in the order the report shows them (ordinal: first emotion dominant → second dominant).
LEVEL_ORDER: tuple[str, ...] = ("70/30", "50/50", "30/70")
LEVEL_COLUMNS: tuple[str, ...] = LEVEL_ORDER + ("other",)
#: Grid of the α/β heatmaps (the search grid of ``tuning``).
GRID_STEP = 0.01
GRID_MAX = 0.5
CALIBRATION_BINS = 10
INSTALL_HINT = "the report draws its figures with matplotlib: pip install 'blemore[report]' (or matplotlib)"


# ---------------------------------------------------------------------------------------------------------------
# The numbers
# ---------------------------------------------------------------------------------------------------------------


def presence_confusion(reference_pairs: Sequence, prediction_pairs: Sequence) -> dict:
    """16 × 16 counts (rows true, columns predicted, ``PRESENCE_NAMES`` order), ``other`` per row, row percentages.

    The row percentages divide by the row's clips, ``other`` included, so a row sums to 100 with its ``other``.
    """
    confusion = challenge.challenge_details(reference_pairs, prediction_pairs)["presence_confusion"]
    counts = np.array(confusion["matrix"], dtype=np.int64)
    other = np.array(confusion["other"], dtype=np.int64)
    rows = counts.sum(axis=1) + other
    with np.errstate(divide="ignore", invalid="ignore"):
        percent = np.where(rows[:, None] > 0, 100.0 * counts / rows[:, None], np.nan)
        other_percent = np.where(rows > 0, 100.0 * other / rows, np.nan)
    return {"labels": list(challenge.PRESENCE_NAMES), "counts": counts.tolist(), "other": other.tolist(),
            "row_percent": percent.tolist(), "other_percent": other_percent.tolist()}


def salience_confusions(reference_pairs: Sequence, prediction_pairs: Sequence) -> dict:
    """Per blend pair ``"ang+hap"``: 3 × 4 counts, rows the true level and columns the predicted one (``LEVEL_ORDER``)
    or ``other`` (the pair missed, or the right pair at no level such as 60/40)."""
    by_pair: dict[str, list[int]] = {f"{a}+{b}": [] for a, b in challenge.BLEND_PAIRS}
    for index, reference in enumerate(reference_pairs):
        emotions = [e for e, _ in challenge.clip_pairs(reference)]
        if len(emotions) == 2:
            by_pair[blemore.presence_name(emotions)].append(index)
    order = [challenge.SALIENCE_LEVEL_NAMES.index(level) for level in LEVEL_ORDER]
    result = {}
    for pair, indices in by_pair.items():
        matrix = np.zeros((3, 4), dtype=np.int64)
        if indices:
            details = challenge.challenge_details([reference_pairs[i] for i in indices],
                                                  [prediction_pairs[i] for i in indices])["salience_confusion"]
            levels = np.array(details["matrix"], dtype=np.int64)[np.ix_(order, order)]
            other = (np.array(details["other_level"]) + np.array(details["wrong_pair"]))[order]
            matrix = np.concatenate([levels, other[:, None]], axis=1)
        result[pair] = matrix.tolist()
    return {"rows": list(LEVEL_ORDER), "columns": list(LEVEL_COLUMNS), "by_pair": result}


def emotion_precision_recall(reference_pairs: Sequence, prediction_pairs: Sequence) -> dict:
    """Per emotion: presence recall (clips showing it that the prediction names it in) and precision (predictions
    naming it whose truth shows it), with their counts."""
    truth = np.array([[e in {x for x, _ in challenge.clip_pairs(r)} for e in blemore.EMOTIONS]
                      for r in reference_pairs], dtype=bool).reshape(-1, len(blemore.EMOTIONS))
    guess = np.array([[e in {x for x, _ in challenge.clip_pairs(p)} for e in blemore.EMOTIONS]
                      for p in prediction_pairs], dtype=bool).reshape(-1, len(blemore.EMOTIONS))
    hits = (truth & guess).sum(axis=0)
    result = {}
    for i, emotion in enumerate(blemore.EMOTIONS):
        n_true, n_predicted = int(truth[:, i].sum()), int(guess[:, i].sum())
        result[emotion] = {"precision": _ratio(hits[i], n_predicted), "recall": _ratio(hits[i], n_true),
                           "n_true": n_true, "n_predicted": n_predicted, "n_both": int(hits[i])}
    return result


def _ratio(numerator, denominator) -> float | None:
    return float(numerator) / float(denominator) if denominator else None


def accuracy_by_level(aligned: AlignedPredictions, correctness: statistics.ClipCorrectness) -> dict:
    """Presence accuracy of single-emotion clips per intensity (1–4) and of neutral clips per situation (1–4), where
    the references say them; empty dicts where they do not."""
    result: dict[str, dict] = {"intensity": {}, "situation": {}}
    for attribute in result:
        values = np.array([getattr(c, attribute) or 0 for c in aligned.references])
        for level in sorted(set(values.tolist()) - {0}):
            rows = values == level
            result[attribute][str(level)] = {"n_clips": int(rows.sum()),
                                             "acc_presence": float(correctness.presence[rows].mean())}
    return result


def threshold_grid(probabilities: np.ndarray, true_outcomes: np.ndarray, step: float = GRID_STEP,
                   maximum: float = GRID_MAX) -> dict:
    """acc_presence, acc_salience and score of the α/β threshold decoder over a grid (rows α, columns β)."""
    from blemore_toolkit.evaluation.tuning import outcome_scores
    from blemore_toolkit.modeling.decoding_blemore import threshold_outcomes

    grid = np.round(np.arange(0.0, maximum + step / 2, step), 4)
    shape = (len(grid), len(grid))
    maps = {key: np.full(shape, np.nan) for key in challenge.METRICS}
    for i, alpha in enumerate(grid):
        for j, beta in enumerate(grid):
            scores = outcome_scores(true_outcomes, threshold_outcomes(probabilities, alpha, beta))
            for key in challenge.METRICS:
                maps[key][i, j] = scores[key]
    return {"alpha": grid.tolist(), "beta": grid.tolist(), **{key: value.tolist() for key, value in maps.items()}}


def calibration(probabilities: np.ndarray, reference_pairs: Sequence, bins: int = CALIBRATION_BINS) -> dict:
    """Reliability of the six emotion probabilities, pooled over emotions and clips.

    Per bin of predicted probability: the clips' mean predicted probability, the mean true *share* of that emotion
    (its salience as a proportion: 1 alone, 0.7/0.5/0.3 in a blend, 0 absent; what the soft-label objective
    targets) and how often the emotion is present at all. ``ece``: the count-weighted mean gap between prediction
    and true share.
    """
    share = np.array([blemore.soft_target(*zip(*challenge.clip_pairs(r))) for r in reference_pairs])
    predicted, truth = probabilities.reshape(-1), share.reshape(-1)
    present = truth > 0
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(predicted, edges[1:-1]), 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_predicted = np.bincount(index, weights=predicted, minlength=bins) / count
        mean_share = np.bincount(index, weights=truth, minlength=bins) / count
        presence_rate = np.bincount(index, weights=present, minlength=bins) / count
    gaps = np.abs(mean_predicted - mean_share)
    ece = float(np.nansum(gaps * count) / count.sum()) if count.sum() else None
    clean = lambda a: [None if not np.isfinite(v) else float(v) for v in a]  # noqa: E731
    return {"edges": edges.tolist(), "count": count.tolist(), "mean_predicted": clean(mean_predicted),
            "mean_share": clean(mean_share), "presence_rate": clean(presence_rate), "ece": ece}


def pair_projections(features: np.ndarray, actors: Sequence[str], outcomes: Sequence[int]) -> dict:
    """Per blend pair, 2-D PCA of the clips of its two emotions alone and of its blends, after standardising every
    feature within each actor (so that the axes show emotion, not who acted), as the paper's Figure 5.

    Returns ``{"ang+hap": {"points": [[x, y], ...], "groups": ["ang", "70/30", ...], "explained": [r1, r2]}}``.
    """
    x = np.asarray(features, dtype=np.float64)
    actors = np.asarray(actors, dtype=object).astype(str)
    standardised = np.empty_like(x)
    for actor in np.unique(actors):
        rows = actors == actor
        block = x[rows]
        standardised[rows] = (block - block.mean(axis=0)) / (block.std(axis=0) + 1e-8)
    result = {}
    for a, b in challenge.BLEND_PAIRS:
        groups, rows = [], []
        for i, outcome in enumerate(outcomes):
            spec = blemore.OUTCOMES[int(outcome)]
            if spec.emotions in ((a,), (b,)):
                groups.append(spec.emotions[0])
            elif spec.emotions == (a, b):
                groups.append(f"{spec.salience[0]}/{spec.salience[1]}")
            else:
                continue
            rows.append(i)
        if len(rows) < 3:
            continue
        block = standardised[rows] - standardised[rows].mean(axis=0)
        _, singular, vt = np.linalg.svd(block, full_matrices=False)
        explained = singular ** 2 / max(float((singular ** 2).sum()), 1e-12)
        result[f"{a}+{b}"] = {"points": (block @ vt[:2].T).tolist(), "groups": groups,
                              "explained": explained[:2].tolist()}
    return result


def report_data(aligned: AlignedPredictions, *, resamples: int = statistics.DEFAULT_RESAMPLES, seed: int = 0,
                features: dict | None = None) -> dict:
    """Every number of the report (see the module docstring); ``features``: ``{"name", "matrix", "actors",
    "outcomes"}`` for the PCA per blend pair."""
    if not aligned.references:
        raise blemore.BlemoreError(f"{aligned.source}: no clip of the references is predicted")
    references, predictions = aligned.reference_pairs, aligned.predictions
    correctness = aligned.correctness()
    data = {
        "source": aligned.source,
        "n_clips": len(references),
        "n_missing": aligned.n_missing,
        "scores": statistics.scores_with_interval(correctness, aligned.actors, resamples=resamples, seed=seed),
        "presence_confusion": presence_confusion(references, predictions),
        "salience_confusion": salience_confusions(references, predictions),
        "per_emotion": emotion_precision_recall(references, predictions),
        "by_level": accuracy_by_level(aligned, correctness),
    }
    if aligned.probabilities is not None:
        data["thresholds"] = {"presence_threshold": aligned.thresholds[0], "salience_threshold": aligned.thresholds[1]}
        data["threshold_grid"] = threshold_grid(aligned.probabilities, aligned.true_outcomes)
        data["calibration"] = calibration(aligned.probabilities, references)
    if features is not None:
        data["pca"] = {"features": features["name"],
                       "pairs": pair_projections(features["matrix"], features["actors"], features["outcomes"])}
    return data


# ---------------------------------------------------------------------------------------------------------------
# The figures
# ---------------------------------------------------------------------------------------------------------------


def _pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed); ``BlemoreError`` saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise blemore.BlemoreError(INSTALL_HINT) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """Save a figure as PNG whole or not at all (an interrupted or failed write leaves no half image)."""
    import io

    import matplotlib.pyplot as plt

    image = io.BytesIO()
    try:
        fig.savefig(image, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return write_bytes_atomically(path, image.getvalue())


def plot_presence_confusion(data: dict, path: Path) -> Path:
    plt = _pyplot()
    confusion = data["presence_confusion"]
    labels = confusion["labels"]
    counts = np.concatenate([np.array(confusion["counts"], dtype=float),
                             np.array(confusion["other"], dtype=float)[:, None]], axis=1)
    percent = np.array([row + [o] for row, o in zip(confusion["row_percent"], confusion["other_percent"])],
                       dtype=float)
    fig, ax = plt.subplots(figsize=(11, 9.5))
    image = ax.imshow(percent, cmap="Blues", vmin=0, vmax=100, aspect="auto")
    for (i, j), n in np.ndenumerate(counts):
        if n:
            dark = np.nan_to_num(percent[i, j]) > 55
            ax.text(j, i, f"{int(n)}\n{percent[i, j]:.0f}%", ha="center", va="center", fontsize=6,
                    color="white" if dark else "black")
    ax.set_xticks(range(len(labels) + 1), labels + ["other"], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted emotions")
    ax.set_ylabel("true emotions")
    ax.set_title(f"Presence confusion ({data['n_clips']} clips): counts and row percentages")
    fig.colorbar(image, ax=ax, label="% of the true row")
    return _save(fig, path)


def plot_salience_confusion(data: dict, path: Path) -> Path:
    plt = _pyplot()
    confusion = data["salience_confusion"]
    fig, axes = plt.subplots(2, 5, figsize=(17, 6.5), constrained_layout=True)
    image = None
    for ax, (pair, matrix) in zip(axes.ravel(), confusion["by_pair"].items()):
        counts = np.array(matrix, dtype=float)
        rows = counts.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            percent = np.where(rows > 0, 100 * counts / rows, np.nan)
        image = ax.imshow(percent, cmap="Purples", vmin=0, vmax=100)
        for (i, j), n in np.ndenumerate(counts):
            ax.text(j, i, f"{int(n)}", ha="center", va="center", fontsize=8,
                    color="white" if np.nan_to_num(percent[i, j]) > 55 else "black")
        a, b = pair.split("+")
        ax.set_xticks(range(4), confusion["columns"], fontsize=7)
        ax.set_yticks(range(3), confusion["rows"], fontsize=7)
        ax.set_title(f"{a}/{b} (n={int(counts.sum())})", fontsize=9)
        ax.set_xlabel(f"predicted {a}/{b}", fontsize=7)
        ax.set_ylabel(f"true {a}/{b}", fontsize=7)
    fig.suptitle("Salience confusion per blend pair (counts; colour: % of the true row; other: wrong pair or no "
                 "level)")
    fig.colorbar(image, ax=axes, shrink=0.8, label="% of the true row")
    return _save(fig, path)


def plot_per_emotion(data: dict, path: Path) -> Path:
    plt = _pyplot()
    levels = data["by_level"]
    panels = 1 + bool(levels["intensity"]) + bool(levels["situation"])
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False, constrained_layout=True)
    ax = axes[0, 0]
    codes = list(blemore.EMOTIONS)
    x = np.arange(len(codes))
    for offset, key, colour in ((-0.2, "precision", "tab:blue"), (0.2, "recall", "tab:orange")):
        values = [data["per_emotion"][c][key] if data["per_emotion"][c][key] is not None else 0 for c in codes]
        ax.bar(x + offset, values, width=0.4, label=key, color=colour)
    ax.set_xticks(x, codes)
    ax.set_ylim(0, 1)
    ax.set_xlabel("emotion")
    ax.set_ylabel("presence precision / recall")
    ax.set_title("Per emotion: is it named when present?")
    ax.legend(loc="lower right")
    panel = 1
    for attribute, title in (("intensity", "single emotions by intensity"), ("situation", "neutral by situation")):
        if not levels[attribute]:
            continue
        ax = axes[0, panel]
        panel += 1
        keys = list(levels[attribute])
        ax.bar(keys, [levels[attribute][k]["acc_presence"] for k in keys], color="tab:green")
        for i, k in enumerate(keys):
            ax.text(i, 0.02, f"n={levels[attribute][k]['n_clips']}", ha="center", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_xlabel(f"{attribute} ({'int' if attribute == 'intensity' else 'sit'}1–4)")
        ax.set_ylabel("acc_presence")
        ax.set_title(title)
    return _save(fig, path)


def plot_scores(data: dict, path: Path) -> Path:
    plt = _pyplot()
    scores = data["scores"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    keys = list(challenge.METRICS)
    values = [scores[k] for k in keys]
    lows = [v - (scores["ci"][k][0] if scores["ci"][k][0] is not None else v) for k, v in zip(keys, values)]
    highs = [(scores["ci"][k][1] if scores["ci"][k][1] is not None else v) - v for k, v in zip(keys, values)]
    ax.bar(keys, values, yerr=[lows, highs], capsize=8, color=["tab:blue", "tab:purple", "tab:gray"])
    for i, v in enumerate(values):
        ax.text(i, v / 2, f"{v:.3f}", ha="center", color="white", fontsize=10)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    level = int(round(scores["ci_level"] * 100))
    ax.set_title(f"Scores with {level}% intervals ({scores['ci_method']}, {scores['n_clusters']} clusters)",
                 fontsize=10)
    return _save(fig, path)


def plot_threshold_grid(data: dict, path: Path) -> Path:
    plt = _pyplot()
    grid = data["threshold_grid"]
    alpha, beta = np.array(grid["alpha"]), np.array(grid["beta"])
    chosen = data["thresholds"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), constrained_layout=True)
    extent = (beta[0], beta[-1], alpha[-1], alpha[0])
    for ax, key in zip(axes, challenge.METRICS):
        values = np.array(grid[key], dtype=float)
        image = ax.imshow(values, cmap="viridis", extent=extent, aspect="auto")
        ax.plot(chosen["salience_threshold"], chosen["presence_threshold"], marker="x", color="red", markersize=12,
                mew=3, label=f"chosen α={chosen['presence_threshold']:.2f}, β={chosen['salience_threshold']:.2f}")
        best = np.unravel_index(np.nanargmax(values), values.shape)
        ax.plot(beta[best[1]], alpha[best[0]], marker="o", mfc="none", color="white", markersize=10, mew=2,
                label=f"best here {np.nanmax(values):.3f}")
        ax.set_xlabel("β (salience threshold)")
        ax.set_ylabel("α (presence threshold)")
        ax.set_title(key)
        ax.legend(loc="lower right", fontsize=7)
        fig.colorbar(image, ax=ax, label=key)
    fig.suptitle("α/β grid of the threshold decoder on these clips (x: the thresholds used; o: the best on them)")
    return _save(fig, path)


def plot_calibration(data: dict, path: Path) -> Path:
    plt = _pyplot()
    cal = data["calibration"]
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.5, 6), height_ratios=(3, 1), sharex=True, constrained_layout=True)
    ax.plot([0, 1], [0, 1], ls="--", color="gray", label="perfect")
    ax.plot(_points(cal["mean_predicted"]), _points(cal["mean_share"]), marker="o",
            label=f"true share of the emotion (ECE {cal['ece']:.3f})")
    ax.plot(_points(cal["mean_predicted"]), _points(cal["presence_rate"]), marker="s", alpha=0.7,
            label="emotion present")
    ax.set_ylabel("observed")
    ax.set_ylim(0, 1)
    ax.set_title("Reliability of the six emotion probabilities")
    ax.legend(fontsize=8)
    edges = np.array(cal["edges"])
    hist.bar(edges[:-1], cal["count"], width=np.diff(edges), align="edge", color="tab:gray")
    hist.set_yscale("log")
    hist.set_xlabel("predicted probability (p_ang … p_neu, pooled)")
    hist.set_ylabel("count")
    return _save(fig, path)


def _points(values: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def plot_pca(data: dict, path: Path) -> Path:
    plt = _pyplot()
    pca = data["pca"]
    fig, axes = plt.subplots(2, 5, figsize=(18, 7.5), constrained_layout=True)
    colours = {"70/30": "tab:orange", "50/50": "tab:purple", "30/70": "tab:green"}
    for ax, (a, b) in zip(axes.ravel(), challenge.BLEND_PAIRS):
        pair = pca["pairs"].get(f"{a}+{b}")
        ax.set_title(f"{a} + {b}", fontsize=10)
        if pair is None:
            ax.text(0.5, 0.5, "too few clips", ha="center", transform=ax.transAxes)
            continue
        points, groups = np.array(pair["points"]), np.array(pair["groups"])
        for group, colour in ((a, "tab:red"), ("70/30", colours["70/30"]), ("50/50", colours["50/50"]),
                              ("30/70", colours["30/70"]), (b, "tab:blue")):
            rows = groups == group
            if rows.any():
                label = group if group in (a, b) else f"{a}/{b} {group}"
                ax.scatter(points[rows, 0], points[rows, 1], s=10, color=colour, label=label, alpha=0.8)
        ax.set_xlabel(f"PC1 ({100 * pair['explained'][0]:.0f}%)", fontsize=8)
        ax.set_ylabel(f"PC2 ({100 * pair['explained'][1]:.0f}%)" if len(pair["explained"]) > 1 else "PC2",
                      fontsize=8)
        ax.legend(fontsize=6, loc="best")
    fig.suptitle(f"PCA per blend pair of {pca['features']} (features standardised per actor)")
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------


FIGURES = (
    ("scores.png", "Scores with their intervals", plot_scores, None),
    ("presence_confusion.png", "Presence confusion (16 × 16)", plot_presence_confusion, None),
    ("salience_confusion.png", "Salience confusion per blend pair", plot_salience_confusion, None),
    ("per_emotion.png", "Per emotion, intensity and situation", plot_per_emotion, None),
    ("threshold_grid.png", "α/β grid", plot_threshold_grid, "threshold_grid"),
    ("calibration.png", "Reliability of the probabilities", plot_calibration, "calibration"),
    ("pca.png", "PCA per blend pair", plot_pca, "pca"),
)


def _scores_table(scores: dict) -> str:
    level = int(round(scores["ci_level"] * 100))
    rows = "".join(
        f"<tr><td>{key}</td><td>{_fmt(scores[key])}</td><td>[{_fmt(scores['ci'][key][0])}, "
        f"{_fmt(scores['ci'][key][1])}]</td></tr>" for key in challenge.METRICS)
    return (f"<table><tr><th>metric</th><th>value</th><th>{level}% interval</th></tr>{rows}</table>"
            f"<p>Interval: {html.escape(scores['ci_method'])} over {scores['n_clusters']} clusters, "
            f"{scores['resamples']} resamples, seed {scores['seed']}.</p>")


def _emotion_table(per_emotion: dict) -> str:
    rows = "".join(f"<tr><td>{e} ({blemore.EMOTION_NAMES[e]})</td><td>{_fmt(v['precision'])}</td>"
                   f"<td>{_fmt(v['recall'])}</td><td>{v['n_true']}</td><td>{v['n_predicted']}</td></tr>"
                   for e, v in per_emotion.items())
    return ("<table><tr><th>emotion</th><th>precision</th><th>recall</th><th>clips showing it</th>"
            f"<th>predictions naming it</th></tr>{rows}</table>")


def _fmt(value) -> str:
    return "–" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.3f}"


def render_html(data: dict, images: dict[str, bytes]) -> str:
    """One page, every figure inline as a base64 PNG; no script, stylesheet or image is fetched from anywhere."""
    parts = [f"<h1>BLEMORE error analysis</h1><p>Predictions: <code>{html.escape(data['source'])}</code>, "
             f"{data['n_clips']} clips scored ({data['n_missing']} reference clips not predicted)."]
    if "thresholds" in data:
        t = data["thresholds"]
        parts.append(f" Decoded with α={t['presence_threshold']:.2f}, β={t['salience_threshold']:.2f}.")
    parts.append("</p><h2>Scores</h2>" + _scores_table(data["scores"]))
    for name, title, _, _ in FIGURES:
        if name in images:
            encoded = base64.b64encode(images[name]).decode("ascii")
            parts.append(f"<h2>{html.escape(title)}</h2><img alt=\"{html.escape(title)}\" "
                         f"src=\"data:image/png;base64,{encoded}\">")
            if name == "per_emotion.png":
                parts.append(_emotion_table(data["per_emotion"]))
    style = ("body{font-family:sans-serif;max-width:1400px;margin:2em auto;color:#222}img{max-width:100%}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;"
             "text-align:right}td:first-child,th:first-child{text-align:left}")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>BLEMORE error analysis</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def write_report(data: dict, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write the figures (PNG), ``report.json`` (every number) and ``report.html`` into ``out_dir``."""
    _pyplot()  # fail before anything is written when matplotlib is missing
    out_dir = Path(out_dir)
    try:
        return _write_report(data, out_dir)
    except OSError as error:  # a full disk, a quota, a read-only folder: each file is whole or absent
        where = error.filename or out_dir
        raise blemore.BlemoreError(f"{where}: cannot write the report ({error.strerror or error}); the files "
                                   "already there are whole, the rest are missing") from None


def _write_report(data: dict, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    images: dict[str, bytes] = {}
    for name, _, plot, needs in FIGURES:
        if needs is not None and needs not in data:
            continue
        written[name] = plot(data, out_dir / name)
        images[name] = written[name].read_bytes()
    written["report.json"] = write_text_atomically(out_dir / "report.json",
                                                   json.dumps(_json_ready(data), indent=1) + "\n")
    written["report.html"] = write_text_atomically(out_dir / "report.html", render_html(data, images))
    return written


def _json_ready(value):
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


__all__ = [
    "FIGURES", "calibration", "emotion_precision_recall", "pair_projections", "presence_confusion", "render_html",
    "report_data", "salience_confusions", "threshold_grid", "write_report",
]
