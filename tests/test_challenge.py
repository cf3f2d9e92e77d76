"""The challenge's arithmetic (metrics.blemore.challenge): hand-computed cases for every rule, then properties."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import blemore
from blemore_toolkit.metrics.blemore import challenge
from blemore_toolkit.metrics.blemore.challenge import ClipScore, score_clip


def entries(*pairs):
    return [{"emotion": e, "salience": s} for e, s in pairs]


ANG_HAP_70_30 = entries(("ang", 70), ("hap", 30))


# ---------------------------------------------------------------------------------------------------------------
# One clip, by hand
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "prediction", "expected"),
    [
        # single emotions: only presence counts
        (entries(("hap", 100)), entries(("hap", 100)), ClipScore(True, None)),
        (entries(("hap", 100)), entries(("sad", 100)), ClipScore(False, None)),
        (entries(("hap", 100)), entries(("hap", 100.0)), ClipScore(True, None)),
        (entries(("hap", 100)), entries(("hap", 37.0)), ClipScore(True, None)),  # salience of a single is not read
        # a blend predicted on a single clip: wrong presence, and no salience to count
        (entries(("hap", 100)), entries(("ang", 70), ("hap", 30)), ClipScore(False, None)),
        # blends
        (ANG_HAP_70_30, entries(("ang", 70), ("hap", 30)), ClipScore(True, True)),
        (ANG_HAP_70_30, entries(("hap", 30), ("ang", 70)), ClipScore(True, True)),  # order inside a clip
        (ANG_HAP_70_30, entries(("ang", 70.0), ("hap", 30.0)), ClipScore(True, True)),  # 70 vs 70.0
        (ANG_HAP_70_30, entries(("ang", 30), ("hap", 70)), ClipScore(True, False)),  # right pair, swapped salience
        (ANG_HAP_70_30, entries(("ang", 50), ("hap", 50)), ClipScore(True, False)),
        (ANG_HAP_70_30, entries(("ang", 100)), ClipScore(False, False)),  # a single emotion on a blend
        (ANG_HAP_70_30, entries(("hap", 100)), ClipScore(False, False)),
        (ANG_HAP_70_30, entries(("ang", 70), ("sad", 30)), ClipScore(False, False)),  # wrong pair, right salience
        (ANG_HAP_70_30, [], ClipScore(False, False)),
        # rounding to whole percent, half to even (as Python's and numpy's round)
        (ANG_HAP_70_30, entries(("ang", 69.6), ("hap", 30.4)), ClipScore(True, True)),
        (ANG_HAP_70_30, entries(("ang", 69.99999237060547), ("hap", 30.000001907348633)), ClipScore(True, True)),
        (ANG_HAP_70_30, entries(("ang", 70.5), ("hap", 29.5)), ClipScore(True, True)),  # 70.5 -> 70, 29.5 -> 30
        (ANG_HAP_70_30, entries(("ang", 69.5), ("hap", 30.5)), ClipScore(True, True)),  # 69.5 -> 70, 30.5 -> 30
        (ANG_HAP_70_30, entries(("ang", 70.51), ("hap", 29.49)), ClipScore(True, False)),  # 71/29
        (entries(("disg", 50), ("fea", 50)), entries(("disg", 50.5), ("fea", 49.5)), ClipScore(True, True)),
        # what the challenge does with sloppy predictions
        (entries(("hap", 100)), entries(("hap", 100), ("hap", 100)), ClipScore(True, None)),  # a set: {hap}
        (ANG_HAP_70_30, entries(("ang", 70), ("ang", 30)), ClipScore(False, False)),
        (ANG_HAP_70_30, entries(("ang", 70), ("hap", 30), ("hap", 30)), ClipScore(True, False)),  # 3 entries
        (ANG_HAP_70_30, entries(("ang", 0.7), ("hap", 0.3)), ClipScore(True, False)),  # fractions round to 1/0
        (ANG_HAP_70_30, entries(("ang", 70), ("hap", 70)), ClipScore(True, False)),  # 70 + 70: hap is wrong
        (ANG_HAP_70_30, entries(("ang", math.nan), ("hap", 30)), ClipScore(True, False)),
        (ANG_HAP_70_30, entries(("ang", math.inf), ("hap", 30)), ClipScore(True, False)),
        (ANG_HAP_70_30, entries(("ANG", 70), ("hap", 30)), ClipScore(False, False)),  # codes are case-sensitive
        (entries(("hap", 100)), entries(("happiness", 100)), ClipScore(False, None)),
    ],
)
def test_score_clip_by_hand(reference, prediction, expected):
    assert score_clip(reference, prediction) == expected


def test_pairs_and_mappings_are_the_same_clip():
    assert score_clip([("ang", 70), ("hap", 30)], [("hap", 30.0), ("ang", 70.0)]) == ClipScore(True, True)
    assert score_clip(ANG_HAP_70_30, [("ang", 30), ("hap", 70)]) == ClipScore(True, False)
    assert challenge.clip_pairs(ANG_HAP_70_30) == [("ang", 70), ("hap", 30)]


def test_round_percent():
    values = (69.5, 70.5, 0.5, 1.5, 99.99999, True, 30)
    assert [challenge.round_percent(x) for x in values] == [70, 70, 0, 2, 100, 1, 30]
    assert challenge.round_percent(math.nan) is None and challenge.round_percent(-math.inf) is None
    for not_a_number in ("70", None, b"70"):
        with pytest.raises(TypeError):
            challenge.round_percent(not_a_number)


# ---------------------------------------------------------------------------------------------------------------
# A set of clips, by hand
# ---------------------------------------------------------------------------------------------------------------

REFERENCES = [
    entries(("sad", 100)),
    entries(("neu", 100)),
    entries(("ang", 70), ("hap", 30)),
    entries(("disg", 50), ("fea", 50)),
    entries(("fea", 30), ("sad", 70)),
]
PREDICTIONS = [
    entries(("sad", 100.0)),  # presence right
    entries(("hap", 100)),  # presence wrong
    entries(("hap", 70), ("ang", 30)),  # presence right, salience wrong (swapped)
    entries(("disg", 100)),  # both wrong: a single emotion on a blend
    entries(("sad", 70.2), ("fea", 29.8)),  # both right
]


def test_challenge_scores_by_hand():
    result = challenge.challenge_scores(REFERENCES, PREDICTIONS)
    assert result == {
        "acc_presence": 3 / 5,
        "acc_salience": 1 / 3,
        "score": (3 / 5 + 1 / 3) / 2,
        "n_clips": 5,
        "n_blends": 3,
        "n_presence_correct": 3,
        "n_salience_correct": 1,
    }


def test_salience_is_undefined_without_blends():
    result = challenge.challenge_scores([entries(("hap", 100))], [entries(("hap", 100))])
    assert result["acc_presence"] == 1.0 and result["n_blends"] == 0
    assert math.isnan(result["acc_salience"]) and math.isnan(result["score"])


def test_misaligned_lists_are_refused():
    with pytest.raises(ValueError, match="2 references but 1 predictions"):
        challenge.challenge_scores(REFERENCES[:2], PREDICTIONS[:1])


def test_details_by_hand():
    details = challenge.challenge_details(REFERENCES, PREDICTIONS)
    names = list(blemore.PRESENCE_NAMES)
    matrix = details["presence_confusion"]["matrix"]
    assert details["presence_confusion"]["labels"] == names and len(matrix) == 16
    assert all(len(row) == 16 for row in matrix) and sum(map(sum, matrix)) == 5
    assert matrix[names.index("sad")][names.index("sad")] == 1
    assert matrix[names.index("neu")][names.index("hap")] == 1
    assert matrix[names.index("ang+hap")][names.index("ang+hap")] == 1
    assert matrix[names.index("disg+fea")][names.index("disg")] == 1
    assert matrix[names.index("fea+sad")][names.index("fea+sad")] == 1
    assert details["presence_confusion"]["other"] == [0] * 16

    salience = details["salience_confusion"]
    assert salience["labels"] == ["50/50", "70/30", "30/70"]
    # ang+hap 70/30 predicted 30/70; fea+sad 30/70 predicted 30/70; disg+fea 50/50 had the wrong pair
    assert salience["matrix"] == [[0, 0, 0], [0, 0, 1], [0, 0, 1]]
    assert salience["wrong_pair"] == [1, 0, 0] and salience["other_level"] == [0, 0, 0]

    assert details["per_emotion"]["fea"] == {"n_clips": 2, "acc_presence": 0.5, "n_blends": 2, "acc_salience": 0.5}
    assert details["per_emotion"]["neu"]["acc_presence"] == 0.0 and math.isnan(details["per_emotion"]["neu"][
        "acc_salience"])
    assert details["per_single"]["sad"] == {"n_clips": 1, "acc_presence": 1.0}
    ang_hap = details["per_blend"]["ang+hap"]
    assert (ang_hap["n_clips"], ang_hap["acc_presence"], ang_hap["acc_salience"]) == (1, 1.0, 0.0)
    assert ang_hap["by_salience"]["70/30"] == {"n_clips": 1, "acc_salience": 0.0}
    assert ang_hap["by_salience"]["50/50"]["n_clips"] == 0
    assert details["per_blend"]["fea+sad"]["by_salience"]["30/70"] == {"n_clips": 1, "acc_salience": 1.0}


def test_details_count_predictions_outside_the_16_outcomes():
    references = [entries(("hap", 100)), entries(("ang", 70), ("hap", 30)), entries(("ang", 50), ("hap", 50))]
    predictions = [entries(("hap", 50), ("neu", 50)), entries(("hap", 40), ("ang", 60)), []]
    details = challenge.challenge_details(references, predictions)
    names = list(blemore.PRESENCE_NAMES)
    assert details["presence_confusion"]["other"][names.index("hap")] == 1  # neutral never blends
    assert details["presence_confusion"]["other"][names.index("ang+hap")] == 1  # nothing predicted
    assert details["salience_confusion"]["other_level"] == [0, 1, 0]  # right pair at 60/40


# ---------------------------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------------------------

outcomes = st.sampled_from(blemore.OUTCOMES)


@st.composite
def truths(draw):
    """A true label in the submission form, entries in any order, saliences as int or float."""
    outcome = draw(outcomes)
    pairs = list(zip(outcome.emotions, outcome.salience))
    pairs = draw(st.permutations(pairs))
    return [{"emotion": e, "salience": draw(st.sampled_from([s, float(s)]))} for e, s in pairs]


@st.composite
def guesses(draw):
    """Any prediction the arithmetic accepts: 0-3 entries, known and unknown codes, any finite or odd salience."""
    codes = st.sampled_from(list(blemore.EMOTIONS) + ["xyz", "Hap"])
    saliences = st.one_of(st.sampled_from([0, 30, 50, 70, 100, 30.0, 0.3, 0.7, 69.5, 70.5]),
                          st.floats(-200, 200), st.just(math.inf), st.just(math.nan))
    return [{"emotion": draw(codes), "salience": draw(saliences)} for _ in range(draw(st.integers(0, 3)))]


clip_lists = st.lists(st.tuples(truths(), guesses()), min_size=1, max_size=25)


@settings(max_examples=150, deadline=None)
@given(clip_lists, st.randoms())
def test_order_of_clips_and_of_entries_never_matters(clips, rng):
    references, predictions = zip(*clips)
    expected = challenge.challenge_scores(references, predictions)
    order = list(range(len(clips)))
    rng.shuffle(order)
    shuffled_predictions = [rng.sample(predictions[i], len(predictions[i])) for i in order]
    shuffled_references = [rng.sample(references[i], len(references[i])) for i in order]
    result = challenge.challenge_scores(shuffled_references, shuffled_predictions)
    assert {k: v for k, v in result.items() if v == v} == {k: v for k, v in expected.items() if v == v}


@settings(max_examples=100, deadline=None)
@given(st.lists(truths(), min_size=1, max_size=30))
def test_perfect_predictions_score_one(references):
    predictions = [list(reversed(r)) for r in references]
    result = challenge.challenge_scores(references, predictions)
    assert result["acc_presence"] == 1.0
    if result["n_blends"]:
        assert result["acc_salience"] == 1.0 and result["score"] == 1.0


@settings(max_examples=300, deadline=None)
@given(truths(), guesses())
def test_salience_never_credits_a_wrong_presence(reference, prediction):
    result = score_clip(reference, prediction)
    if result.salience:
        assert result.presence
    assert (result.salience is None) == (len(reference) == 1)


@settings(max_examples=100, deadline=None)
@given(clip_lists)
def test_score_is_the_mean_and_counts_add_up(clips):
    references, predictions = zip(*clips)
    result = challenge.challenge_scores(references, predictions)
    assert result["n_clips"] == len(clips)
    assert result["n_blends"] == sum(len(r) == 2 for r in references)
    assert result["acc_presence"] == result["n_presence_correct"] / result["n_clips"]
    if result["n_blends"]:
        assert result["score"] == pytest.approx((result["acc_presence"] + result["acc_salience"]) / 2)
    details = challenge.challenge_details(references, predictions)
    confusion = details["presence_confusion"]
    assert sum(map(sum, confusion["matrix"])) + sum(confusion["other"]) == len(clips)
    trace = sum(confusion["matrix"][i][i] for i in range(16))
    assert trace == result["n_presence_correct"]
    salience = details["salience_confusion"]
    assert sum(salience["matrix"][i][i] for i in range(3)) == result["n_salience_correct"]
    assert sum(map(sum, salience["matrix"])) + sum(salience["other_level"]) + sum(salience["wrong_pair"]) == \
        result["n_blends"]
