"""`blemore baseline`: the paper's trivial most-frequent baselines, by hand and on the real folds and test split."""

import csv
import json
from fractions import Fraction

import pytest

import blemore
from blemore_toolkit.data import references
from blemore_toolkit.evaluation import baselines

MANIFEST = blemore.reference_path("blemore_manifest.csv")
COLUMNS = "filename,mix,emotion_1,emotion_2,emotion_1_salience,emotion_2_salience,fold".split(",")

# Two small folds whose most frequent outcomes differ, so counting on the partition or on train shows.
ROWS = [
    # fold 0: hap is the most frequent single, ang+hap the most frequent pair, ang+hap 70/30 the top blend
    ("A1_hap_int1_ver1", "hap", "", 0), ("A1_hap_int2_ver1", "hap", "", 0), ("A1_sad_int1_ver1", "sad", "", 0),
    ("A1_mix_ang_hap_70_30_ver1", "ang", "hap", 0), ("A1_mix_ang_hap_70_30_ver2", "ang", "hap", 0),
    ("A1_mix_disg_fea_50_50_ver1", "disg", "fea", 0),
    # fold 1: sad, disg+fea, disg+fea 50/50
    ("A2_sad_int1_ver1", "sad", "", 1), ("A2_sad_int2_ver1", "sad", "", 1), ("A2_ang_int1_ver1", "ang", "", 1),
    ("A2_mix_disg_fea_50_50_ver1", "disg", "fea", 1), ("A2_mix_disg_fea_50_50_ver2", "disg", "fea", 1),
    ("A2_mix_ang_hap_30_70_ver1", "ang", "hap", 1),
]


@pytest.fixture
def two_folds(tmp_path):
    path = tmp_path / "train_metadata.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for name, first, second, fold in ROWS:
            saliences = name.split("_")[-3:-1] if second else ["", ""]
            writer.writerow([name, int(bool(second)), first, second, *saliences, fold])
    return references.read_references(path)


def figures(row):
    return {kind: (row[kind]["acc_presence"], row[kind]["acc_salience"]) for kind in ("single", "blend")}


def test_counted_on_the_evaluated_partition(two_folds):
    table = baselines.baseline_table(two_folds)
    assert list(table) == ["train", "fold0", "fold1", "folds_mean"]  # no test clips here
    assert figures(table["fold0"]) == {"single": (2 / 6, 0.0), "blend": (2 / 6, 2 / 3)}
    assert table["fold0"]["single"]["prediction"] == [{"emotion": "hap", "salience": 100}]
    assert table["fold0"]["blend"]["presence_prediction"] == "ang+hap"
    assert table["fold0"]["blend"]["prediction"] == [{"emotion": "ang", "salience": 70}, {"emotion": "hap",
                                                                                          "salience": 30}]
    assert figures(table["fold1"]) == {"single": (2 / 6, 0.0), "blend": (2 / 6, 2 / 3)}
    # pooled: sad wins singles; ang+hap and disg+fea tie (3 each), broken in schema order; disg+fea 50/50 tops blends
    assert figures(table["train"]) == {"single": (3 / 12, 0.0), "blend": (3 / 12, 3 / 6)}
    assert table["train"]["blend"]["presence_prediction"] == "ang+hap"
    assert table["train"]["blend"]["tied_with"] == ["disg+fea"]
    assert table["train"]["blend"]["prediction"][0] == {"emotion": "disg", "salience": 50}
    assert table["folds_mean"]["single"] == {"acc_presence": 2 / 6, "acc_salience": 0.0}


def test_counted_on_the_training_partition(two_folds):
    table = baselines.baseline_table(two_folds, count_on="train")
    # fold 0 is scored with fold 1's most frequent outcomes and the other way round
    assert figures(table["fold0"]) == {"single": (1 / 6, 0.0), "blend": (1 / 6, 1 / 3)}
    assert table["fold0"]["single"]["prediction"] == [{"emotion": "sad", "salience": 100}]
    assert figures(table["fold1"]) == {"single": (0.0, 0.0), "blend": (1 / 6, 0.0)}
    with pytest.raises(ValueError, match="count_on"):
        baselines.baseline_table(two_folds, count_on="test")


def test_the_papers_trivial_baselines_from_the_manifest():
    """The BLEMORE paper reports 0.074/0.000 and 0.059/0.036 on test, 0.078/0.000 and 0.057/0.035 on validation."""
    table = baselines.baseline_table(references.read_references(MANIFEST))
    assert list(table) == ["test", "train", "fold0", "fold1", "fold2", "fold3", "fold4", "folds_mean"]
    test, train = table["test"], table["train"]
    assert (test["n_clips"], test["n_blends"], train["n_clips"], train["n_blends"]) == (594, 334, 2456, 1326)
    # exact counts behind the rounded figures
    assert Fraction(test["single"]["acc_presence"]).limit_denominator(600) == Fraction(44, 594)
    assert Fraction(test["blend"]["acc_presence"]).limit_denominator(600) == Fraction(35, 594)
    assert Fraction(test["blend"]["acc_salience"]).limit_denominator(400) == Fraction(12, 334)
    assert Fraction(train["single"]["acc_presence"]).limit_denominator(2500) == Fraction(192, 2456)
    assert Fraction(train["blend"]["acc_presence"]).limit_denominator(2500) == Fraction(140, 2456)
    assert Fraction(train["blend"]["acc_salience"]).limit_denominator(1400) == Fraction(47, 1326)
    rounded = {name: {kind: tuple(round(x, 3) for x in pair) for kind, pair in figures(table[name]).items()}
               for name in ("test", "train")}
    assert rounded == {"test": {"single": (0.074, 0.0), "blend": (0.059, 0.036)},
                       "train": {"single": (0.078, 0.0), "blend": (0.057, 0.035)}}
    assert train["single"]["tied_with"] == ["hap"]  # fea and hap both have 192 clips
    for k in range(5):
        assert table[f"fold{k}"]["single"]["acc_salience"] == 0.0
        assert 0.04 < table[f"fold{k}"]["blend"]["acc_presence"] < 0.07


def test_cli_json_and_table(capsys, tmp_path):
    assert blemore.main(["baseline", "--references", str(MANIFEST), "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert set(table["test"]) >= {"single", "blend"} and set(table["test"]["blend"]) >= {"acc_presence",
                                                                                            "acc_salience"}
    assert blemore.main(["baseline", "-r", str(MANIFEST), "--count-on", "train"]) == 0
    out = capsys.readouterr().out
    assert "counted on the training partition" in out and "fold4" in out and "folds_mean" in out
    empty = tmp_path / "empty.csv"
    empty.write_text("filename\n")
    assert blemore.main(["baseline", "-r", str(empty)]) == 1
    assert "no labelled train or test clips" in capsys.readouterr().err


def test_a_prepared_folder_with_unlabelled_test_clips(tmp_path):
    from test_submission_scoring import write_prepared_folder

    rows = [(name, (first, second) if second else (first,),
             tuple(int(x) for x in name.split("_")[-3:-1]) if second else (100,), "train", fold)
            for name, first, second, fold in ROWS]
    rows += [("test_0001", (), (), "test", None)]
    table = baselines.baseline_table(references.read_references(write_prepared_folder(tmp_path / "ds", rows, True)))
    assert "test" not in table and figures(table["fold1"]) == {"single": (2 / 6, 0.0), "blend": (2 / 6, 2 / 3)}
