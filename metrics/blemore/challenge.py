"""The challenge's arithmetic: presence and salience correctness per clip, accuracy over a set of clips.

One implementation shared by ``blemore score``, the ``metrics/blemore`` evaluate module and the Trainer's
``compute_metrics``, so that every number the toolkit prints is computed the same way. The rules are the
challenge's own:

* **presence** (every clip): correct when the *set* of predicted emotion codes equals the true set. Order,
  salience and repeated entries do not matter (``[hap, hap]`` is the set ``{hap}``).
* **salience** (clips whose truth is a blend only): correct when the prediction has exactly two entries and
  ``{emotion: round(salience)}`` equals the truth. Saliences are in percent and rounded half to even (what both
  Python's ``round`` and numpy's ``round`` do), so 69.6 counts as 70 and float32 noise (69.99999) is harmless.
  A single-emotion prediction on a blend, or two entries naming the same emotion, is wrong.
* the challenge **score** is the mean of the two accuracies.

A clip is given either as a sequence of ``{"emotion": code, "salience": percent}`` mappings (the submission
format) or of ``(emotion, salience)`` pairs. Scoring does not validate: a prediction with an unknown code or a
fraction for a salience is scored as the challenge would score it (wrong). ``check_clips`` is the strict check the
evaluate module runs first by default (``strict=False`` skips it); the toolkit's
``blemore_toolkit.evaluation.submission`` checks whole submission files. Only the standard library is imported (no
numpy), so ``blemore score`` starts fast.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

# The label schema this arithmetic needs. The folder is a self-contained evaluate metric (publishable as a Hub metric
# Space, loadable where the toolkit is not installed), so it states the schema itself; ``tests/test_layout.py``
# checks that it is the dataset's schema in ``py``.
#: The official short codes, in the order of every vector.
EMOTIONS: tuple[str, ...] = ("ang", "disg", "fea", "hap", "sad", "neu")
#: The ten pairs of the five non-neutral emotions, each in the order the clip names use.
BLEND_PAIRS: tuple[tuple[str, str], ...] = tuple(itertools.combinations(EMOTIONS[:5], 2))
#: Saliences of (first, second) emotion of a pair, in percent.
SALIENCE_LEVELS: tuple[tuple[int, int], ...] = ((50, 50), (70, 30), (30, 70))
#: The 16 presence classes: six singles, then the ten pairs as ``a+b``.
PRESENCE_NAMES: tuple[str, ...] = EMOTIONS + tuple(f"{a}+{b}" for a, b in BLEND_PAIRS)
#: What every scorer reports, in this order.
METRICS: tuple[str, ...] = ("acc_presence", "acc_salience", "score")

#: Salience levels as the clip names write them: first/second emotion of the pair in ``BLEND_PAIRS`` order.
SALIENCE_LEVEL_NAMES: tuple[str, ...] = tuple(f"{a}/{b}" for a, b in SALIENCE_LEVELS)

_PRESENCE_INDEX = {frozenset(name.split("+")): i for i, name in enumerate(PRESENCE_NAMES)}
_PAIR_INDEX = {pair: i for i, pair in enumerate(BLEND_PAIRS)}
_LEVEL_INDEX = {level: i for i, level in enumerate(SALIENCE_LEVELS)}


class ClipScore(NamedTuple):
    """Correctness of one clip: ``salience`` is ``None`` when the truth is not a blend (the clip does not count)."""

    presence: bool
    salience: bool | None


def clip_pairs(clip: Sequence[Any]) -> list[tuple[Any, Any]]:
    """``[(emotion, salience), ...]`` from either accepted form of a clip (mappings or pairs)."""
    # Tuples (the references, checked submissions) first: an isinstance check against Mapping costs more than the
    # rest of scoring a clip.
    return [entry if type(entry) is tuple else (entry["emotion"], entry.get("salience")) if isinstance(entry, Mapping)
            else tuple(entry) for entry in clip]


def _as_pairs(clip: Sequence[Any]) -> Sequence[tuple[Any, Any]]:
    """``clip_pairs`` for scoring: a clip of one or two tuples (every reference and checked prediction) is already
    in pair form and is read as it is, without a copy; anything else goes through ``clip_pairs``."""
    if 0 < len(clip) <= 2 and type(clip[0]) is tuple and type(clip[-1]) is tuple:
        return clip
    return clip_pairs(clip)


def round_percent(value: Any) -> int | None:
    """A salience rounded to a whole percent, half to even; ``None`` for NaN or infinity (never equal to a truth).

    Booleans count as 1 and 0, as they do in numpy. Anything that is not a number raises ``TypeError``: the
    challenge's scorer fails on it too, so callers must catch it before scoring (the toolkit's submission checks
    do).
    """
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"salience {value!r} is not a number")
    number = float(value)
    if not math.isfinite(number):
        return None
    return round(number)


def _salience_key(pairs: Sequence[tuple[Any, Any]]) -> dict | None:
    """``{emotion: rounded salience}`` of a two-entry clip, the form the challenge compares; ``None`` otherwise."""
    if len(pairs) != 2:
        return None
    return {emotion: round_percent(salience) for emotion, salience in pairs}


#: Every ClipScore there can be, built once: a NamedTuple's constructor is a Python call, a tenth of scoring a clip.
_CLIP_SCORES = {(presence, salience): ClipScore(presence, salience)
                for presence in (False, True) for salience in (None, False, True)}


def score_clip(reference: Sequence[Any], prediction: Sequence[Any]) -> ClipScore:
    """Presence and salience correctness of one clip (see the module docstring for the rules)."""
    truth, guess = _as_pairs(reference), _as_pairs(prediction)
    presence = {e for e, _ in truth} == {e for e, _ in guess}  # a bool, as is == between two dicts below
    if len(truth) != 2:
        return _CLIP_SCORES[presence, None]
    # The presence check first: when the sets differ the salience dicts differ too, and it spares the rounding.
    return _CLIP_SCORES[presence, presence and _salience_key(guess) == _salience_key(truth)]


def mean_score(acc_presence: float, acc_salience: float) -> float:
    """The challenge score: the plain mean of the two accuracies."""
    return (acc_presence + acc_salience) / 2.0


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def score_clips(references: Sequence[Sequence[Any]], predictions: Sequence[Sequence[Any]]) -> list[ClipScore]:
    """``score_clip`` over aligned lists of clips."""
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions")
    return [score_clip(r, p) for r, p in zip(references, predictions)]


def summarize(scores: Sequence[ClipScore]) -> dict:
    """Accuracies and counts from per-clip scores.

    ``acc_salience`` (and so ``score``) is NaN when no clip is a blend: the accuracy is undefined there, and a
    made-up 0 or 1 would be read as a result.
    """
    n_clips = len(scores)
    n_presence = sum(s.presence for s in scores)
    blend_scores = [s.salience for s in scores if s.salience is not None]
    n_blends, n_salience = len(blend_scores), sum(blend_scores)
    acc_presence, acc_salience = _ratio(n_presence, n_clips), _ratio(n_salience, n_blends)
    return {
        "acc_presence": acc_presence,
        "acc_salience": acc_salience,
        "score": mean_score(acc_presence, acc_salience),
        "n_clips": n_clips,
        "n_blends": n_blends,
        "n_presence_correct": n_presence,
        "n_salience_correct": n_salience,
    }


def challenge_scores(references: Sequence[Sequence[Any]], predictions: Sequence[Sequence[Any]]) -> dict:
    """``acc_presence``, ``acc_salience``, ``score`` and counts of aligned reference and prediction clips.

    >>> challenge_scores([[("hap", 100)], [("ang", 70), ("hap", 30)]],
    ...                  [[("hap", 100)], [("hap", 30.0), ("ang", 70.0)]])["score"]
    1.0
    """
    return summarize(score_clips(references, predictions))


# ---------------------------------------------------------------------------------------------------------------
# Strict input checks (the evaluate module's default)
# ---------------------------------------------------------------------------------------------------------------

#: Entry keys of the submission format.
ENTRY_KEYS: tuple[str, ...] = ("emotion", "salience")
# Saliences of a clip must add up to 100 percent; this much slack covers rounding (69.6 + 30.4) and float32 noise.
_PERCENT_SLACK = 1.0


def entry_problem(entry: Any) -> str | None:
    """What is wrong with the form of one entry (not a mapping, a key missing or unknown); ``None`` if nothing."""
    if not isinstance(entry, Mapping):
        return f"entry {entry!r} is not a mapping with keys 'emotion' and 'salience'"
    missing = [key for key in ENTRY_KEYS if key not in entry or entry[key] is None]
    if missing:
        return f"entry {dict(entry)!r} lacks the key {missing[0]!r}"
    unknown = sorted(str(key) for key in entry if key not in ENTRY_KEYS)
    if unknown:
        return f"entry {dict(entry)!r} has the unknown key {unknown[0]!r} (only 'emotion' and 'salience')"
    return None


def clip_problem(clip: Any) -> str | None:
    """What makes one clip an invalid BLEMORE answer; ``None`` when it is valid.

    Valid: one or two entries, official codes (``ang disg fea hap sad neu``), no code twice, saliences in percent
    between 0 and 100 that add up to 100 (a single emotion has 100). Saliences given as fractions (0.7 and 0.3)
    are named as such, since the challenge would round them to 1 and 0 and score the clip wrong.
    """
    if isinstance(clip, (str, bytes, Mapping)) or not isinstance(clip, Sequence):
        return f"expected a list of {{'emotion', 'salience'}} entries, got {type(clip).__name__}"
    if not clip:
        return "no emotion (a clip needs one entry, or two for a blend)"
    for entry in clip:
        problem = entry_problem(entry)
        if problem:
            return problem
    if len(clip) > 2:
        return f"{len(clip)} entries (one emotion, or two for a blend)"
    codes = [entry["emotion"] for entry in clip]
    for code in codes:
        if code not in EMOTIONS:
            return f"unknown emotion code {code!r} (the codes are {' '.join(EMOTIONS)})"
    if len(set(codes)) != len(codes):
        return f"emotion {codes[0]!r} given twice"
    saliences = []
    for entry in clip:
        value = entry["salience"]
        if isinstance(value, (str, bytes, bool)) or not isinstance(value, numbers.Real):
            return f"salience {value!r} of {entry['emotion']!r} is not a number"
        if not math.isfinite(float(value)) or not 0 <= float(value) <= 100:
            return f"salience {value!r} of {entry['emotion']!r} is not a percentage between 0 and 100"
        saliences.append(float(value))
    total = sum(saliences)
    if abs(total - 1.0) <= 0.01 * _PERCENT_SLACK and total < 100 - _PERCENT_SLACK:
        return (f"fractional saliences {saliences} (they sum to 1): give percent, e.g. 70 and 30, or "
                "pass strict=False to score them as the challenge would (wrong)")
    if abs(total - 100.0) > _PERCENT_SLACK:
        return f"saliences {saliences} sum to {total:g}, not 100"
    return None


def check_clips(clips: Sequence[Any], name: str = "predictions") -> None:
    """Raise ``ValueError`` naming the first invalid clip by its index and the problem (see ``clip_problem``)."""
    for index, clip in enumerate(clips):
        problem = clip_problem(clip)
        if problem:
            raise ValueError(f"{name}[{index}]: {problem}")


# ---------------------------------------------------------------------------------------------------------------
# Details: where the errors are
# ---------------------------------------------------------------------------------------------------------------


def presence_index(emotions: Sequence[Any]) -> int | None:
    """Index into ``PRESENCE_NAMES`` of a set of emotions; ``None`` outside the 16 (e.g. three emotions)."""
    return _PRESENCE_INDEX.get(frozenset(emotions))


def _salience_level(pairs: Sequence[tuple[Any, Any]]) -> int | None:
    """Index into ``SALIENCE_LEVELS`` of a two-emotion prediction, in the pair's canonical order; ``None`` if none."""
    if len(pairs) != 2 or pairs[0][0] == pairs[1][0]:
        return None
    try:
        ordered = sorted(pairs, key=lambda p: EMOTIONS.index(p[0]))
        return _LEVEL_INDEX.get((round_percent(ordered[0][1]), round_percent(ordered[1][1])))
    except (ValueError, TypeError):
        return None


def challenge_details(references: Sequence[Sequence[Any]], predictions: Sequence[Sequence[Any]]) -> dict:
    """Per-emotion and per-blend accuracy plus the presence and salience confusion matrices.

    * ``per_emotion[code]``: over clips whose truth contains ``code`` (``neu`` has no blends: salience is NaN).
    * ``per_single[code]``: presence accuracy over the single-emotion clips of ``code``.
    * ``per_blend["ang+hap"]``: presence and salience accuracy over the clips of that pair, and salience accuracy
      per level (``"70/30"`` means 70 for the pair's first emotion in ``BLEND_PAIRS`` order).
    * ``presence_confusion``: rows are the true, columns the predicted presence outcome over
      ``PRESENCE_NAMES`` (16 x 16); ``other`` counts, per row, predictions outside the 16 (three emotions,
      neutral in a pair, an unknown code, nothing).
    * ``salience_confusion``: over blend clips whose pair was predicted right, rows the true and columns the
      predicted level (3 x 3); ``other_level`` counts right-pair predictions at no level (60/40, or more than two
      entries) and ``wrong_pair`` the blend clips whose presence was wrong.
    """
    n_outcomes, n_levels = len(PRESENCE_NAMES), len(SALIENCE_LEVELS)
    # Plain lists of counts, not numpy: importing numpy would cost `blemore score` more than the counting does.
    presence_matrix = [[0] * n_outcomes for _ in range(n_outcomes)]
    presence_other = [0] * n_outcomes
    salience_matrix = [[0] * n_levels for _ in range(n_levels)]
    salience_other = [0] * n_levels
    salience_wrong_pair = [0] * n_levels
    # Per-emotion counts: clips, presence right, blends, salience right. Per pair and level: clips, salience right.
    emotion_counts = {e: [0, 0, 0, 0] for e in EMOTIONS}
    single_counts = {e: [0, 0] for e in EMOTIONS}
    pair_counts = {pair: [0, 0, 0] for pair in BLEND_PAIRS}
    level_counts = {(pair, level): [0, 0] for pair in BLEND_PAIRS for level in SALIENCE_LEVELS}

    for reference, prediction in zip(references, predictions, strict=True):
        truth, guess = _as_pairs(reference), _as_pairs(prediction)
        result = score_clip(truth, guess)
        true_emotions = {e for e, _ in truth}
        row = presence_index(true_emotions)
        column = presence_index({e for e, _ in guess})
        if row is None:
            raise ValueError(f"reference {reference!r} is not one of the 16 presence outcomes")
        if column is None:
            presence_other[row] += 1
        else:
            presence_matrix[row][column] += 1
        for e in true_emotions:
            counts = emotion_counts[e]
            counts[0] += 1
            counts[1] += result.presence
            if result.salience is not None:
                counts[2] += 1
                counts[3] += result.salience
        if result.salience is None:
            single_counts[truth[0][0]][0] += 1
            single_counts[truth[0][0]][1] += result.presence
            continue
        ordered = sorted(truth, key=lambda pair: EMOTIONS.index(pair[0]))
        pair_emotions = tuple(e for e, _ in ordered)
        true_level = tuple(int(round(float(s))) for _, s in ordered)
        pair_counts[pair_emotions][0] += 1
        pair_counts[pair_emotions][1] += result.presence
        pair_counts[pair_emotions][2] += result.salience
        level_counts[(pair_emotions, true_level)][0] += 1
        level_counts[(pair_emotions, true_level)][1] += result.salience
        level_row = _LEVEL_INDEX[true_level]
        if not result.presence:
            salience_wrong_pair[level_row] += 1
            continue
        level_column = _salience_level(guess)
        if level_column is None:
            salience_other[level_row] += 1
        else:
            salience_matrix[level_row][level_column] += 1

    return {
        "per_emotion": {
            e: {"n_clips": c[0], "acc_presence": _ratio(c[1], c[0]),
                "n_blends": c[2], "acc_salience": _ratio(c[3], c[2])}
            for e, c in emotion_counts.items()
        },
        "per_single": {e: {"n_clips": c[0], "acc_presence": _ratio(c[1], c[0])} for e, c in single_counts.items()},
        "per_blend": {
            f"{a}+{b}": {
                "n_clips": c[0],
                "acc_presence": _ratio(c[1], c[0]),
                "acc_salience": _ratio(c[2], c[0]),
                "by_salience": {
                    name: {"n_clips": level_counts[((a, b), level)][0],
                           "acc_salience": _ratio(level_counts[((a, b), level)][1], level_counts[((a, b), level)][0])}
                    for name, level in zip(SALIENCE_LEVEL_NAMES, SALIENCE_LEVELS)
                },
            }
            for (a, b), c in pair_counts.items()
        },
        "presence_confusion": {
            "labels": list(PRESENCE_NAMES),
            "matrix": presence_matrix,
            "other": presence_other,
        },
        "salience_confusion": {
            "labels": list(SALIENCE_LEVEL_NAMES),
            "matrix": salience_matrix,
            "other_level": salience_other,
            "wrong_pair": salience_wrong_pair,
        },
    }
