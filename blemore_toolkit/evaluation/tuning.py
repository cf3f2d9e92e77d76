"""Challenge accuracy on outcome indices, and the α/β threshold search that every trainer runs on validation data.

Training (``blemore train``) and the heads on encoder features (``blemore heads``) both end a fold the same way:
the validation clips' emotion probabilities are decoded with the paper's presence/salience thresholds, and the pair
(α, β) with the best challenge score is kept in the model's config. Both call ``tune_thresholds`` here so that the
search, its grid and its tie-breaking are one piece of code.

Two grids (``ThresholdGrid``), one per protocol (see ``features/protocols.py``):

* ``TOOLKIT_GRID``: α and β from 0 to 0.50 in steps of 0.01; among equally good pairs the one nearest the config's
  defaults (0.15, 0.2) in L1 distance, so an uninformative validation set leaves the defaults in place;
* ``PAPER_GRID``: the organisers' 20 × 20 grid, α and β each ``linspace(0.05, 0.95, 20)``; ties go to the first
  pair in α-major order (lowest α, then lowest β). It can pick β > 0.5, which the toolkit's grid cannot.

Scoring works on the 36 outcome indices of ``blemore.OUTCOMES`` rather than on ``[{"emotion", "salience"}]`` lists:
for predictions that come from a decoder (always one of the 36 outcomes) the two are equal, and a test checks that
``outcome_scores`` agrees with ``challenge.challenge_scores`` clip for clip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from blemore_toolkit.modeling.decoding_blemore import (
    _PAIR_TABLE,
    NEUTRAL_INDEX,
    OUTCOME_IS_BLEND,
    OUTCOME_PRESENCE,
    to_numpy,
)

#: The toolkit's search grid: α (presence) and β (salience) from 0 to 0.5 in steps of 0.01.
DEFAULT_GRID: tuple[float, ...] = tuple(np.round(np.arange(0.0, 0.501, 0.01), 2))
#: Where the toolkit's search prefers to land among equally good pairs: the config's defaults.
DEFAULT_THRESHOLDS: tuple[float, float] = (0.15, 0.2)
#: The paper's grid values of α and of β: ``numpy.linspace(0.05, 0.95, 20)`` exactly (not rounded).
PAPER_GRID_VALUES: tuple[float, ...] = tuple(float(v) for v in np.linspace(0.05, 0.95, 20))
TIE_RULES: tuple[str, ...] = ("nearest_default", "first")


@dataclass(frozen=True)
class ThresholdGrid:
    """The α (presence) and β (salience) values searched and how ties in score are broken.

    ``tie_rule``: ``"first"`` keeps the first best pair in α-major order (lowest α, then lowest β; the paper's
    ``>`` comparison while looping α outside β); ``"nearest_default"`` keeps the best pair nearest ``default``
    (L1 distance; then the first in α-major order).
    """

    name: str
    presence: tuple[float, ...]
    salience: tuple[float, ...]
    tie_rule: str
    default: tuple[float, float] = DEFAULT_THRESHOLDS

    def __post_init__(self):
        if self.tie_rule not in TIE_RULES:
            raise ValueError(f"tie rule must be one of {TIE_RULES}, got {self.tie_rule!r}")

    def describe(self) -> str:
        def span(values):
            return f"{len(values)} values {values[0]:.2f}…{values[-1]:.2f}"

        ties = ("lowest α, then lowest β" if self.tie_rule == "first"
                else f"nearest (α, β) = {self.default} in L1, then lowest α, lowest β")
        return f"α: {span(self.presence)}; β: {span(self.salience)}; ties: {ties}"


TOOLKIT_GRID = ThresholdGrid("toolkit", DEFAULT_GRID, DEFAULT_GRID, "nearest_default")
PAPER_GRID = ThresholdGrid("paper", PAPER_GRID_VALUES, PAPER_GRID_VALUES, "first")


def outcome_scores(true_outcomes: Sequence[int] | np.ndarray, predicted_outcomes: Sequence[int] | np.ndarray) -> dict:
    """``acc_presence``, ``acc_salience`` and ``score`` of predicted against true outcome indices (36-way).

    Presence is right when the two outcomes name the same emotions; salience (blends only) when they are the same
    outcome. ``acc_salience`` is NaN when no true outcome is a blend, as in ``challenge.summarize``.
    """
    truth = np.asarray(true_outcomes, dtype=np.int64).reshape(-1)
    guess = np.asarray(predicted_outcomes, dtype=np.int64).reshape(-1)
    if truth.shape != guess.shape:
        raise ValueError(f"{truth.size} true outcomes but {guess.size} predicted")
    presence = OUTCOME_PRESENCE[truth] == OUTCOME_PRESENCE[guess]
    blends = OUTCOME_IS_BLEND[truth]
    acc_presence = float(presence.mean()) if truth.size else float("nan")
    acc_salience = float((guess[blends] == truth[blends]).mean()) if blends.any() else float("nan")
    return {
        "acc_presence": acc_presence,
        "acc_salience": acc_salience,
        "score": (acc_presence + acc_salience) / 2.0,
        "n_clips": int(truth.size),
        "n_blends": int(blends.sum()),
    }


@dataclass(frozen=True)
class ThresholdSearch:
    """The best (α, β) on a set of clips and the challenge accuracies they reach there."""

    presence_threshold: float
    salience_threshold: float
    score: float
    acc_presence: float
    acc_salience: float

    def as_dict(self) -> dict:
        return asdict(self)


def tune_thresholds(
    emotion_probs,
    true_outcomes: Sequence[int] | np.ndarray,
    presence_grid: Sequence[float] | None = None,
    salience_grid: Sequence[float] | None = None,
    *,
    grid: ThresholdGrid = TOOLKIT_GRID,
) -> ThresholdSearch:
    """Grid-search α and β of the threshold decoder for the best challenge score on these clips.

    Decodes exactly like ``decoding_blemore.threshold_outcomes`` (a test checks it, including differences
    |p1 − p2| that equal a grid β exactly: 50/50), but sorts the probabilities once and decodes every β of an α in
    one array operation, so a 51 × 51 grid over the 3,050 clips takes well under a second. Ties in score (common:
    many thresholds fall in the same gap between probabilities) follow ``grid.tie_rule``. ``presence_grid`` /
    ``salience_grid`` replace the grid's values (its tie rule stays).
    """
    probs = to_numpy(emotion_probs)
    truth = np.asarray(true_outcomes, dtype=np.int64).reshape(-1)
    if probs.ndim != 2 or probs.shape != (truth.size, _PAIR_TABLE.shape[0]):
        raise ValueError(f"expected ({truth.size}, 6) emotion probabilities, got shape {probs.shape}")
    if truth.size == 0:
        raise ValueError("cannot tune thresholds on zero clips")
    order = np.argsort(-probs, axis=1, kind="stable")
    rows = np.arange(len(probs))
    first, second = order[:, 0], order[:, 1]
    p_second = probs[rows, second]
    has_neutral = (first == NEUTRAL_INDEX) | (second == NEUTRAL_INDEX)
    low, high = np.minimum(first, second), np.maximum(first, second)
    difference = probs[rows, low] - probs[rows, high]
    presence_grid = grid.presence if presence_grid is None else presence_grid
    salience_grid = grid.salience if salience_grid is None else salience_grid
    alphas = np.asarray(presence_grid, dtype=np.float64)
    betas = np.asarray(salience_grid, dtype=np.float64)
    blends = OUTCOME_IS_BLEND[truth]
    n_blends = int(blends.sum())
    presence_counts, salience_counts = _grid_counts(truth, blends, first, p_second, has_neutral, low, high,
                                                    difference, alphas, betas)
    presence_table = presence_counts / truth.size  # (n_alpha, n_beta), the accuracies of every (α, β)
    salience_table = salience_counts / n_blends if n_blends else presence_table * 0

    best: tuple | None = None
    for a, alpha in enumerate(alphas):
        presence, salience = presence_table[a], salience_table[a]
        scores = (presence + salience) / 2.0
        for b, beta in enumerate(betas):
            # scores are rounded so that equal accuracies computed in another order still tie
            if grid.tie_rule == "first":
                key = (round(float(scores[b]), 12),)
            else:
                key = (round(float(scores[b]), 12), -(abs(alpha - grid.default[0]) + abs(beta - grid.default[1])))
            if best is None or key > best[0]:  # strictly better: an equal key keeps the earlier (α-major) pair
                best = (key, float(alpha), float(beta), float(scores[b]), float(presence[b]), float(salience[b]))
    _, alpha, beta, score, acc_presence, acc_salience = best
    if not n_blends:
        acc_salience, score = float("nan"), float("nan")
    return ThresholdSearch(alpha, beta, score, acc_presence, acc_salience)


def _grid_counts(truth, blends, first, p_second, has_neutral, low, high, difference, alphas, betas
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(n_alpha, n_beta) counts of clips with presence right and blends with salience right, for every (α, β).

    A clip is decoded alone (its top emotion) when neutral is one of its two emotions, its second probability is
    0, or that probability is below α; else as the pair at the salience level β gives. So for each β the counts
    are those of the pair decoding, corrected by (alone − pair) for the clips decoded alone at that α: the clips
    whose second probability lies below α, i.e. the first ones of the α grid sorted (a bincount over the grid
    position of each clip, summed up the grid). Linear in the clips for each β: no (β, clips) array is made.
    """
    presence_of = OUTCOME_PRESENCE
    true_presence = presence_of[truth]
    alone_presence = presence_of[first] == true_presence
    alone_salience = (first == truth) & blends
    always_alone = (p_second <= 0) | has_neutral
    sorted_alphas = np.unique(alphas)
    # position in the sorted α grid from which on the clip is decoded alone (α > its second probability)
    start = np.searchsorted(sorted_alphas, p_second, side="right")
    start[always_alone] = 0
    bins = len(sorted_alphas) + 1
    row_of_alpha = np.searchsorted(sorted_alphas, alphas)
    presence_counts = np.empty((len(alphas), len(betas)))
    salience_counts = np.empty((len(alphas), len(betas)))
    magnitude = np.abs(difference)
    direction = np.where(difference > 0, 1, 2)
    for b, beta in enumerate(betas):
        pair = _PAIR_TABLE[low, high, np.where(magnitude <= beta, 0, direction)]
        pair_presence = presence_of[pair] == true_presence
        pair_salience = (pair == truth) & blends
        for counts, alone, paired in ((presence_counts, alone_presence, pair_presence),
                                      (salience_counts, alone_salience, pair_salience)):
            change = alone.astype(np.int64) - paired  # what decoding the clip alone adds
            by_start = np.bincount(start, weights=change, minlength=bins)
            counts[:, b] = (int(paired.sum()) + np.cumsum(by_start)[:-1][row_of_alpha])
    return presence_counts, salience_counts
