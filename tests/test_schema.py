"""The label schema and clip-name grammar against the real BLEMORE manifest and the paper's counts."""

import collections

import pytest

import blemore


@pytest.fixture(scope="module")
def manifest():
    return blemore.load_manifest()


@pytest.fixture(scope="module")
def labels(manifest):
    return {name: blemore.parse_clip_name(name) for name in manifest}


def test_outcome_space():
    assert len(blemore.OUTCOMES) == 36
    assert len(set(blemore.OUTCOME_NAMES)) == 36
    assert len(blemore.BLEND_PAIRS) == 10
    assert len(blemore.PRESENCE_NAMES) == 16
    assert all("neu" not in pair for pair in blemore.BLEND_PAIRS)


def test_every_manifest_name_parses_and_counts_match_the_paper(manifest, labels):
    assert len(manifest) == 3050
    singles = [lab for lab in labels.values() if not lab.is_blend]
    blends = [lab for lab in labels.values() if lab.is_blend]
    assert len(singles) == 1390
    assert len(blends) == 1660
    assert sum(lab.salience == (50, 50) for lab in blends) == 553
    assert sum(lab.salience != (50, 50) for lab in blends) == 1107
    # every one of the 36 outcomes occurs
    assert set(lab.outcome for lab in labels.values()) == set(range(36))


def test_actor_and_fold_structure(manifest, labels):
    actors = {lab.actor_id for lab in labels.values()}
    assert len(actors) == 58
    split_actors = collections.defaultdict(set)
    fold_actors = collections.defaultdict(set)
    for name, entry in manifest.items():
        split_actors[entry.split].add(labels[name].actor_id)
        if entry.split == "train":
            fold_actors[entry.fold].add(labels[name].actor_id)
    assert len(split_actors["train"]) == 47 and len(split_actors["test"]) == 11
    assert not split_actors["train"] & split_actors["test"]
    assert sorted(fold_actors) == [0, 1, 2, 3, 4]
    assert set().union(*fold_actors.values()) == split_actors["train"]
    folds = list(fold_actors.values())
    assert all(not (a & b) for i, a in enumerate(folds) for b in folds[i + 1:])
    assert sum(1 for e in manifest.values() if e.split == "train") == 2456
    assert sum(1 for e in manifest.values() if e.split == "test") == 594


@pytest.mark.parametrize(
    "name, emotions, salience, intensity, situation",
    [
        ("A102_ang_int1_ver1", ("ang",), (100,), 1, None),
        ("A55_neu_sit2_ver1", ("neu",), (100,), None, 2),
        ("A411_mix_ang_hap_30_70_ver1", ("ang", "hap"), (30, 70), None, None),
        ("A411_mix_ang_hap_30_70_ver1.mov", ("ang", "hap"), (30, 70), None, None),
    ],
)
def test_parse_examples(name, emotions, salience, intensity, situation):
    label = blemore.parse_clip_name(name)
    assert (label.emotions, label.salience, label.intensity, label.situation) == (
        emotions, salience, intensity, situation)
    assert label.clip_id == name.removesuffix(".mov")


@pytest.mark.parametrize(
    "name, reason",
    [
        ("A102_ang_int9_ver1", "intensity"),
        ("A102_mix_hap_ang_70_30_ver1", "pairs are written in alphabetical order"),
        ("A102_mix_ang_neu_50_50_ver1", "neutral never blends"),
        ("A102_mix_ang_hap_60_40_ver1", "salience 60/40"),
        ("A102_neu_int1_ver1", "not a BLEMORE clip name"),
        ("B102_ang_int1_ver1", "not a BLEMORE clip name"),
        ("A102_ang_int1", "not a BLEMORE clip name"),
        ("test_0001", "not a BLEMORE clip name"),
    ],
)
def test_bad_names_are_refused_with_the_name(name, reason):
    with pytest.raises(ValueError) as error:
        blemore.parse_clip_name(name)
    assert name in str(error.value) and reason in str(error.value)


def test_targets_and_outcome_index_are_order_insensitive():
    assert blemore.outcome_index(["hap", "ang"], [70.0, 30.0]) == blemore.outcome_index(["ang", "hap"], [30, 70])
    assert blemore.OUTCOMES[blemore.outcome_index(["hap", "ang"], [70, 30])].name == "mix_ang_hap_30_70"
    assert blemore.soft_target(["ang", "hap"], [30, 70]) == [0.3, 0.0, 0.0, 0.7, 0.0, 0.0]
    assert blemore.presence_vector(["neu"]) == [0, 0, 0, 0, 0, 1.0]
    assert blemore.presence_name(["sad", "ang"]) == "ang+sad"
    with pytest.raises(ValueError):
        blemore.outcome_index(["ang", "hap"], [60, 40])


def test_test_clip_names():
    assert blemore.is_test_clip("test_0001")
    assert not blemore.is_test_clip("A102_ang_int1_ver1")
    assert blemore.clip_id_from_path("/x/y/test_0001.MOV") == "test_0001"
