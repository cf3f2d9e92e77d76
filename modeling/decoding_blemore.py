"""BLEMORE label space and decoders: model probabilities → challenge predictions ``[{"emotion", "salience"}]``.

Plain numpy, no torch and no model: the training and prediction commands use these functions on stored
probabilities to tune and apply the decoding parameters, and a model uses the very same functions with the
parameters kept in its config, so a pushed model predicts exactly as it was validated.

Every decoder returns indices into ``OUTCOMES`` (the 36 mutually exclusive answers), so predictions can be
compared, counted and scored without string handling; ``outcomes_to_predictions`` turns them into the challenge
form.

This file is shipped as Hub remote code and therefore cannot import the ``blemore`` package; the label space below
mirrors ``blemore.py`` (the project's one source of truth) and a test asserts the two are equal.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

# ---------------------------------------------------------------------------------------------------------------
# Label space (mirrors blemore.EMOTIONS, BLEND_PAIRS, SALIENCE_LEVELS, OUTCOMES, OUTCOME_NAMES, PRESENCE_NAMES)
# ---------------------------------------------------------------------------------------------------------------

#: The official short codes, in the order of every 6-wide vector (logits, probabilities, soft targets).
EMOTIONS: tuple[str, ...] = ("ang", "disg", "fea", "hap", "sad", "neu")
NEUTRAL_INDEX = EMOTIONS.index("neu")
#: Neutral never occurs in a blend.
BLENDABLE_EMOTIONS: tuple[str, ...] = EMOTIONS[:5]
BLEND_PAIRS: tuple[tuple[str, str], ...] = tuple(itertools.combinations(BLENDABLE_EMOTIONS, 2))
#: Saliences (percent) of the (first, second) emotion of a pair.
SALIENCE_LEVELS: tuple[tuple[int, int], ...] = ((50, 50), (70, 30), (30, 70))
#: The 36 outcomes as (emotions, saliences): six singles at 100, then each pair at each salience level.
OUTCOMES: tuple[tuple[tuple[str, ...], tuple[int, ...]], ...] = tuple(((e,), (100,)) for e in EMOTIONS) + tuple(
    (pair, levels) for pair in BLEND_PAIRS for levels in SALIENCE_LEVELS
)
OUTCOME_NAMES: tuple[str, ...] = tuple(
    emotions[0] if len(emotions) == 1 else "mix_{}_{}_{}_{}".format(*emotions, *salience)
    for emotions, salience in OUTCOMES
)
#: The 16 presence answers (what ACC_presence compares): six singles, ten pairs.
PRESENCE_NAMES: tuple[str, ...] = EMOTIONS + tuple(f"{a}+{b}" for a, b in BLEND_PAIRS)

#: (36, 6) soft target of each outcome: saliences as proportions (the paper's KL target).
OUTCOME_TARGETS: np.ndarray = np.zeros((len(OUTCOMES), len(EMOTIONS)))
for _row, (_emotions, _salience) in enumerate(OUTCOMES):
    for _e, _s in zip(_emotions, _salience):
        OUTCOME_TARGETS[_row, EMOTIONS.index(_e)] = _s / 100.0
OUTCOME_TARGETS.setflags(write=False)
#: (36,) True for the 30 blended outcomes.
OUTCOME_IS_BLEND: np.ndarray = np.array([len(emotions) == 2 for emotions, _ in OUTCOMES])
OUTCOME_IS_BLEND.setflags(write=False)
# The six single emotions come first, then the 30 blends.
_FIRST_BLEND = int(np.argmax(OUTCOME_IS_BLEND))
assert OUTCOME_IS_BLEND[_FIRST_BLEND:].all() and not OUTCOME_IS_BLEND[:_FIRST_BLEND].any()
#: (36,) index into PRESENCE_NAMES of each outcome.
OUTCOME_PRESENCE: np.ndarray = np.array([PRESENCE_NAMES.index("+".join(emotions)) for emotions, _ in OUTCOMES])
OUTCOME_PRESENCE.setflags(write=False)
# (36, 16) 1.0 where an outcome names that presence answer (sums outcome probabilities into presence probabilities).
_PRESENCE_MEMBERSHIP: np.ndarray = (OUTCOME_PRESENCE[:, None] == np.arange(len(PRESENCE_NAMES))[None, :]).astype(float)
_PRESENCE_MEMBERSHIP.setflags(write=False)
# (36,) entropy of each outcome's soft target: -KL(t_o ‖ p) = Σ t_o log p + H(t_o).
with np.errstate(divide="ignore", invalid="ignore"):
    _TARGET_ENTROPY: np.ndarray = -np.nansum(
        np.where(OUTCOME_TARGETS > 0, OUTCOME_TARGETS * np.log(OUTCOME_TARGETS), 0), -1
    )
_TARGET_ENTROPY.setflags(write=False)

#: Label frequencies of the released data (1,390 single-emotion clips over six emotions, 1,660 blended clips
#: over ten pairs × three saliences), used as the default prior when six emotion probabilities are turned into
#: an outcome distribution (see ``outcome_probabilities``).
BLEMORE_OUTCOME_PRIOR: np.ndarray = np.where(OUTCOME_IS_BLEND, 1660 / 30, 1390 / 6) / 3050
BLEMORE_OUTCOME_PRIOR.setflags(write=False)
#: Fraction of blended clips in the released data (the weight of ACC_salience per clip, see ``expected_scores``).
BLEMORE_BLEND_FRACTION = 1660 / 3050

DECODERS: tuple[str, ...] = ("thresholds", "expected_score")

_PAIR_LEVEL_OUTCOME = {(pair, levels): index for index, (pair, levels) in enumerate(OUTCOMES) if len(pair) == 2}
# (6, 6, 3) lookup: outcome index of the pair (i, j), i < j, at salience level k (50/50, 70/30, 30/70).
_PAIR_TABLE = np.full((len(EMOTIONS), len(EMOTIONS), len(SALIENCE_LEVELS)), -1, dtype=np.int64)
for _a, _b in BLEND_PAIRS:
    for _k, _levels in enumerate(SALIENCE_LEVELS):
        _PAIR_TABLE[EMOTIONS.index(_a), EMOTIONS.index(_b), _k] = _PAIR_LEVEL_OUTCOME[((_a, _b), _levels)]


# ---------------------------------------------------------------------------------------------------------------
# Conversions
# ---------------------------------------------------------------------------------------------------------------


def to_numpy(values) -> np.ndarray:
    """A float64 array from a numpy array, nested lists or a torch tensor (detached, moved to the CPU)."""
    if hasattr(values, "detach"):  # a torch tensor, without importing torch here
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def softmax(logits, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax of logits (any array-like)."""
    return _softmax_in_place(to_numpy(logits).copy(), axis)


def _softmax_in_place(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax of a float64 array this module made and owns, computed in it (no temporary (N, 36) arrays)."""
    scores -= scores.max(axis=axis, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=axis, keepdims=True)
    return scores


def outcomes_to_predictions(indices: Sequence[int] | np.ndarray) -> list[list[dict]]:
    """Outcome indices → the challenge form ``[{"emotion": "ang", "salience": 70.0}, ...]`` per clip."""
    return [
        [{"emotion": e, "salience": float(s)} for e, s in zip(*OUTCOMES[int(index)])]
        for index in np.asarray(indices).reshape(-1)
    ]


def emotion_probabilities(outcome_probs) -> np.ndarray:
    """(N, 36) outcome distribution → (N, 6) expected salience proportion of each emotion (sums to 1)."""
    return to_numpy(outcome_probs) @ OUTCOME_TARGETS


def resolve_outcome_prior(prior: str | Sequence[float] | np.ndarray | None) -> np.ndarray:
    """``"blemore"`` (the released label frequencies), ``"uniform"``/None, or 36 non-negative weights → (36,)."""
    if prior is None or (isinstance(prior, str) and prior == "uniform"):
        return np.full(len(OUTCOMES), 1.0 / len(OUTCOMES))
    if isinstance(prior, str):
        if prior != "blemore":
            raise ValueError(f"outcome prior must be 'blemore', 'uniform' or 36 weights, got {prior!r}")
        return np.array(BLEMORE_OUTCOME_PRIOR)
    weights = to_numpy(prior).reshape(-1)
    if weights.shape != (len(OUTCOMES),) or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"outcome prior must hold 36 non-negative weights (OUTCOMES order), got {weights.tolist()}")
    return weights / weights.sum()


def outcome_probabilities(
    emotion_probs, temperature: float = 1.0, prior: str | Sequence[float] | np.ndarray | None = "blemore"
) -> np.ndarray:
    """(N, 6) emotion probabilities (a soft-label KL model's softmax) → (N, 36) distribution over outcomes.

    A model trained with the soft-label KL objective predicts a proportion vector ``p`` but no probability per
    outcome. Read ``p`` as noisy evidence about the clip's soft target ``t_o`` and score every outcome by how well
    its target explains it, a Gibbs posterior with the KL divergence as the loss::

        P(o | p)  ∝  prior(o) · exp(-KL(t_o ‖ p) / temperature)

    (for a single emotion ``e`` the likelihood is ``p_e^(1/T)``; for a 70/30 blend of ``a, b`` it is
    ``(e^H(0.7, 0.3) · p_a^0.7 · p_b^0.3)^(1/T)``). The temperature controls how sharply the evidence is trusted
    and can be fitted on validation data; the prior carries the label frequencies, without which the three
    saliences of a pair would together outweigh a single emotion on nearly any evidence.
    """
    if temperature <= 0:
        raise ValueError(f"outcome temperature must be positive, got {temperature}")
    return tempered_outcome_probabilities(outcome_log_likelihoods(emotion_probs), temperature, prior)


def outcome_log_likelihoods(emotion_probs) -> np.ndarray:
    """(N, 6) emotion probabilities → (N, 36) ``-KL(t_o ‖ p)``, the part of ``outcome_probabilities`` that does not
    depend on the temperature or the prior (compute it once when trying several temperatures)."""
    probs = np.clip(to_numpy(emotion_probs), 1e-12, None)
    probs = probs / probs.sum(axis=-1, keepdims=True)
    return np.log(probs) @ OUTCOME_TARGETS.T + _TARGET_ENTROPY


def tempered_outcome_probabilities(
    log_likelihoods: np.ndarray, temperature: float, prior: str | Sequence[float] | np.ndarray | None = "blemore"
) -> np.ndarray:
    """(N, 36) ``outcome_log_likelihoods`` → the (N, 36) outcome distribution at this temperature and prior (the
    same values as ``outcome_probabilities`` on the emotion probabilities they came from)."""
    if temperature <= 0:
        raise ValueError(f"outcome temperature must be positive, got {temperature}")
    scores = np.asarray(log_likelihoods, dtype=np.float64) / temperature
    scores += np.log(np.clip(resolve_outcome_prior(prior), 1e-300, None))
    return _softmax_in_place(scores)


# ---------------------------------------------------------------------------------------------------------------
# Decoder 1: the paper's presence / salience thresholds
# ---------------------------------------------------------------------------------------------------------------


def threshold_outcomes(emotion_probs, presence_threshold: float, salience_threshold: float) -> np.ndarray:
    """The paper's rule on (N, 6) emotion probabilities → (N,) outcome indices.

    Only the two most probable emotions are considered (ties go to the lower index, i.e. the order of
    ``EMOTIONS``, so a non-neutral emotion wins a tie with neutral):

    1. presence, threshold α (``presence_threshold``): if the second probability is below α, the clip shows the
       top emotion alone (this also covers a top probability below α, where the paper falls back to the top
       emotion);
    2. neutral never blends: if neutral is one of the two, the more probable of the two is predicted alone;
    3. salience, threshold β (``salience_threshold``): otherwise the clip is a blend of the two; it is 50/50 when
       their probabilities differ by at most β, else the more probable emotion gets 70 and the other 30.
    """
    probs = to_numpy(emotion_probs)
    if probs.ndim != 2 or probs.shape[1] != len(EMOTIONS):
        raise ValueError(f"expected (N, {len(EMOTIONS)}) emotion probabilities, got shape {probs.shape}")
    order = np.argsort(-probs, axis=1, kind="stable")
    first, second = order[:, 0], order[:, 1]
    rows = np.arange(len(probs))
    p_second = probs[rows, second]
    single = (p_second < presence_threshold) | (p_second <= 0) | (first == NEUTRAL_INDEX) | (second == NEUTRAL_INDEX)
    low, high = np.minimum(first, second), np.maximum(first, second)
    difference = probs[rows, low] - probs[rows, high]  # first minus second emotion of the pair, in pair order
    level = np.where(np.abs(difference) <= salience_threshold, 0, np.where(difference > 0, 1, 2))
    pair_outcome = _PAIR_TABLE[low, high, level]
    return np.where(single, first, pair_outcome).astype(np.int64)


# ---------------------------------------------------------------------------------------------------------------
# Decoder 2: the outcome that maximises the expected challenge score
# ---------------------------------------------------------------------------------------------------------------


def expected_scores(outcome_probs, blend_fraction: float = BLEMORE_BLEND_FRACTION) -> np.ndarray:
    """(N, 36) outcome distribution → (N, 36) expected challenge score of predicting each outcome (up to a constant).

    Derivation. The challenge score over ``N`` clips, ``B`` of them blends, is

        S = ½ · (1/N) Σ_n 1[presence(ŷ_n) = presence(y_n)]  +  ½ · (1/B) Σ_{n: y_n blend} 1[ŷ_n = y_n],

    because a blend's salience counts only if the prediction names the same two emotions with the same
    saliences, i.e. the same outcome (a single-emotion prediction never earns salience credit). ``B`` is fixed by
    the truth, not by the predictions; writing ``B = ρN`` with ρ the blend fraction of the evaluated clips, the
    expectation under the model's belief ``P_n`` over each clip's outcome splits into one term per clip:

        E[S] = 1/(2N) Σ_n [ P_n(presence(Y) = presence(ŷ_n)) + (1/ρ) · P_n(Y = ŷ_n) · 1[ŷ_n is a blend] ].

    Each clip can therefore be decided on its own by maximising its bracket:

        score(ŷ) = Σ_{o: presence(o) = presence(ŷ)} P(o)  +  1[ŷ blend] · P(ŷ) / ρ.

    For a single emotion this is just its probability; for a pair it is the pair's total probability plus the
    bonus of the most probable salience level, so a blend is chosen once the evidence for the pair outweighs the
    best single emotion, and the salience level is then the most probable one.
    """
    probs = to_numpy(outcome_probs)
    if probs.ndim != 2 or probs.shape[1] != len(OUTCOMES):
        raise ValueError(f"expected (N, {len(OUTCOMES)}) outcome probabilities, got shape {probs.shape}")
    if not 0 < blend_fraction <= 1:
        raise ValueError(f"blend fraction must be in (0, 1], got {blend_fraction}")
    return add_blend_bonus(presence_scores(probs), probs, blend_fraction)


def presence_scores(outcome_probs: np.ndarray) -> np.ndarray:
    """(N, 36) outcome distribution → (N, 36) probability that the presence answer of each outcome is right: the
    part of ``expected_scores`` that does not depend on the blend fraction."""
    return np.take(outcome_probs @ _PRESENCE_MEMBERSHIP, OUTCOME_PRESENCE, axis=1)


def add_blend_bonus(scores: np.ndarray, outcome_probs: np.ndarray, blend_fraction: float) -> np.ndarray:
    """``presence_scores`` + the salience bonus ``P(o) / ρ`` of each blend, added in place: ``expected_scores``."""
    scores[:, _FIRST_BLEND:] += outcome_probs[:, _FIRST_BLEND:] / blend_fraction
    return scores


def expected_score_outcomes(outcome_probs, blend_fraction: float = BLEMORE_BLEND_FRACTION) -> np.ndarray:
    """(N, 36) outcome distribution → (N,) outcome indices maximising the expected challenge score."""
    return np.argmax(expected_scores(outcome_probs, blend_fraction), axis=1).astype(np.int64)


# ---------------------------------------------------------------------------------------------------------------
# One entry point with the parameters a config stores
# ---------------------------------------------------------------------------------------------------------------


def config_decoding_parameters(config) -> dict:
    """Keyword arguments of ``decode_outcomes`` as a model config stores them (its ``decoding_rule`` is the
    ``decoder`` argument)."""
    prior = config.outcome_prior
    return {
        "decoder": config.decoding_rule,
        "presence_threshold": float(config.presence_threshold),
        "salience_threshold": float(config.salience_threshold),
        "blend_fraction": float(config.blend_fraction),
        "outcome_temperature": float(config.outcome_temperature),
        "outcome_prior": prior if isinstance(prior, str) else list(prior),
    }


def decode_outcomes(
    probabilities,
    decoder: str = "thresholds",
    *,
    presence_threshold: float = 0.15,
    salience_threshold: float = 0.2,
    blend_fraction: float = BLEMORE_BLEND_FRACTION,
    outcome_temperature: float = 1.0,
    outcome_prior: str | Sequence[float] | None = "blemore",
) -> np.ndarray:
    """Probabilities → (N,) outcome indices with the chosen decoder.

    ``probabilities`` is either (N, 6) emotion probabilities (softmax of a model's ``logits``) or (N, 36) outcome
    probabilities (softmax of ``outcome_logits`` of a model trained with the 36-way objective). The threshold
    decoder works on emotions (outcome probabilities are first summed into expected saliences); the expected-score
    decoder works on outcomes (emotion probabilities are first turned into an outcome distribution with
    ``outcome_probabilities``).
    """
    probs = to_numpy(probabilities)
    if probs.ndim == 1:
        probs = probs[None, :]
    width = probs.shape[-1]
    if width not in (len(EMOTIONS), len(OUTCOMES)):
        raise ValueError(f"expected {len(EMOTIONS)} emotion or {len(OUTCOMES)} outcome probabilities, got {width}")
    if decoder == "thresholds":
        emotion_probs = probs if width == len(EMOTIONS) else emotion_probabilities(probs)
        return threshold_outcomes(emotion_probs, presence_threshold, salience_threshold)
    if decoder == "expected_score":
        outcome_probs = (
            probs if width == len(OUTCOMES) else outcome_probabilities(probs, outcome_temperature, outcome_prior)
        )
        return expected_score_outcomes(outcome_probs, blend_fraction)
    raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")


def decode(probabilities, decoder: str = "thresholds", **parameters) -> list[list[dict]]:
    """Probabilities → challenge predictions ``[{"emotion", "salience"}]`` per clip (see ``decode_outcomes``)."""
    return outcomes_to_predictions(decode_outcomes(probabilities, decoder, **parameters))


__all__ = [
    "add_blend_bonus",
    "BLEMORE_BLEND_FRACTION",
    "BLEMORE_OUTCOME_PRIOR",
    "BLENDABLE_EMOTIONS",
    "BLEND_PAIRS",
    "DECODERS",
    "EMOTIONS",
    "OUTCOMES",
    "OUTCOME_IS_BLEND",
    "OUTCOME_NAMES",
    "OUTCOME_PRESENCE",
    "OUTCOME_TARGETS",
    "PRESENCE_NAMES",
    "SALIENCE_LEVELS",
    "decode",
    "decode_outcomes",
    "emotion_probabilities",
    "expected_score_outcomes",
    "expected_scores",
    "outcome_log_likelihoods",
    "outcome_probabilities",
    "outcomes_to_predictions",
    "presence_scores",
    "resolve_outcome_prior",
    "softmax",
    "tempered_outcome_probabilities",
    "threshold_outcomes",
    "to_numpy",
]
