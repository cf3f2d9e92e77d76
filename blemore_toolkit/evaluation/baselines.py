"""``blemore baseline``: the paper's trivial most-frequent baselines, per validation fold and on the test partition.

Two constant predictors, scored with the challenge's arithmetic:

* **single**: always the most frequent single emotion (e.g. ``[{"emotion": "ang", "salience": 100}]``). Its salience
  accuracy is 0 by construction: a single emotion is wrong on every blend.
* **blend**: for presence, always the most frequent blend pair; for salience, always the most frequent blend with
  its salience configuration (pair and 70/30, 50/50 or 30/70).

Following the paper, the most frequent outcome is counted on the partition being evaluated (``--count-on
partition``, an upper bound no real model can use); ``--count-on train`` counts it on the training partition
instead (the train clips outside the fold for a fold, all train clips for the test partition). Ties are broken
in the schema's order (``blemore.EMOTIONS``, ``blemore.BLEND_PAIRS``, ``blemore.SALIENCE_LEVELS``) and reported.

Partitions: ``test``, ``train`` (every train clip, i.e. the five validation folds pooled, which is what the
paper's "validation" trivial baselines are computed on), ``fold0`` ... ``fold4``, and ``folds_mean`` (the
mean of the per-fold accuracies).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import blemore
from blemore_toolkit.data import references
from blemore_toolkit.data.references import ReferenceClip
from blemore_toolkit.metrics.blemore import challenge

COUNT_ON = ("partition", "train")


def _most_frequent(counts: Counter, order: Sequence) -> tuple[object, list]:
    """The most frequent key (ties broken by ``order``) and the keys tied with it."""
    ranked = sorted(counts, key=lambda key: (-counts[key], order.index(key)))
    best = ranked[0]
    return best, [key for key in ranked[1:] if counts[key] == counts[best]]


def _constant_scores(clips: Sequence[ReferenceClip], prediction: list[tuple[str, int]]) -> dict:
    return challenge.challenge_scores([c.pairs for c in clips], [prediction] * len(clips))


def _entries(prediction: list[tuple[str, int]]) -> list[dict]:
    return [{"emotion": e, "salience": s} for e, s in prediction]


def trivial_baselines(evaluated: Sequence[ReferenceClip], counted: Sequence[ReferenceClip]) -> dict:
    """The single and blend baselines on ``evaluated`` clips, their most frequent outcomes counted on ``counted``."""
    singles = Counter(c.emotions[0] for c in counted if not c.is_blend)
    pairs = Counter(c.emotions for c in counted if c.is_blend)
    blends = Counter((c.emotions, c.salience) for c in counted if c.is_blend)
    if not singles or not pairs:
        raise blemore.BlemoreError("the clips to count on need single-emotion and blended clips")
    outcome_order = [(pair, level) for pair in blemore.BLEND_PAIRS for level in blemore.SALIENCE_LEVELS]

    single, single_ties = _most_frequent(singles, blemore.EMOTIONS)
    single_prediction = [(single, 100)]
    single_scores = _constant_scores(evaluated, single_prediction)

    pair, pair_ties = _most_frequent(pairs, blemore.BLEND_PAIRS)
    (blend_pair, level), blend_ties = _most_frequent(blends, outcome_order)
    # Presence only looks at the pair; salience uses the most frequent pair-and-level configuration.
    pair_prediction = [(pair[0], 50), (pair[1], 50)]
    blend_prediction = list(zip(blend_pair, level))
    presence = _constant_scores(evaluated, pair_prediction)
    salience = _constant_scores(evaluated, blend_prediction)
    return {
        "single": {
            "acc_presence": single_scores["acc_presence"],
            "acc_salience": single_scores["acc_salience"],
            "prediction": _entries(single_prediction),
            "tied_with": list(single_ties),
        },
        "blend": {
            "acc_presence": presence["acc_presence"],
            "acc_salience": salience["acc_salience"],
            "presence_prediction": blemore.presence_name(pair),
            "prediction": _entries(blend_prediction),
            "tied_with": [blemore.presence_name(p) for p in pair_ties],
            "salience_tied_with": [blemore.Outcome(p, s).name for p, s in blend_ties],
        },
        "n_clips": len(evaluated),
        "n_blends": sum(c.is_blend for c in evaluated),
    }


def baseline_table(reference_set: references.ReferenceSet, count_on: str = "partition") -> dict:
    """Trivial baselines for every partition the references offer (see the module docstring)."""
    if count_on not in COUNT_ON:
        raise ValueError(f"count_on must be one of {COUNT_ON}, not {count_on!r}")
    clips = list(reference_set.clips.values())
    train = [c for c in clips if c.split == "train"]
    partitions = {"test": [c for c in clips if c.split == "test"], "train": train}
    folds = sorted({c.fold for c in train if c.fold is not None})
    partitions.update({f"fold{k}": [c for c in train if c.fold == k] for k in folds})

    table: dict = {}
    for name, evaluated in partitions.items():
        if not evaluated:
            continue
        if count_on == "partition":
            counted = evaluated
        elif name.startswith("fold"):
            counted = [c for c in train if c.fold != int(name[4:])]
        else:
            counted = train
        if not counted:
            raise blemore.BlemoreError(f"{reference_set.source}: no train clips to count the most frequent "
                                       "outcome on (--count-on train needs them)")
        table[name] = trivial_baselines(evaluated, counted)
    if folds:
        fold_rows = [table[f"fold{k}"] for k in folds]
        table["folds_mean"] = {
            kind: {metric: sum(row[kind][metric] for row in fold_rows) / len(fold_rows)
                   for metric in ("acc_presence", "acc_salience")}
            for kind in ("single", "blend")
        }
    if not table:
        raise blemore.BlemoreError(f"{reference_set.source}: no labelled train or test clips")
    return table


def format_table(table: dict, count_on: str) -> str:
    """The table for people: one row per partition and baseline."""
    where = "each evaluated partition itself" if count_on == "partition" else "the training partition"
    lines = [f"Trivial baselines (most frequent outcome counted on {where})",
             f"{'partition':<11}{'baseline':<8}{'clips':>7}{'blends':>8}{'presence':>10}{'salience':>10}  prediction"]
    for name, row in table.items():
        for kind in ("single", "blend"):
            cell = row[kind]
            if "prediction" in cell:
                shown = "/".join(f"{e['emotion']} {e['salience']}" for e in cell["prediction"])
                if kind == "blend":
                    shown = f"{cell['presence_prediction']} (presence), {shown} (salience)"
                counts = f"{row['n_clips']:>7}{row['n_blends']:>8}"
            else:
                shown, counts = "mean over the folds", f"{'':>7}{'':>8}"
            lines.append(f"{name:<11}{kind:<8}{counts}{cell['acc_presence']:>10.3f}{cell['acc_salience']:>10.3f}  "
                         f"{shown}")
    return "\n".join(lines)
