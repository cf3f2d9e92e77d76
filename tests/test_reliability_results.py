"""Reliability of what the evaluation commands read and write: probabilities files (`compare`, `report`,
`ensemble`, `train --resume`), reference CSVs, and the JSON the toolkit writes.

Every bad file gets one line naming it (and its line); no command accepts a probability that is not one, and no
JSON the toolkit writes holds a ``NaN`` token.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import blemore
from blemore_toolkit.evaluation.probabilities import PROBABILITY_COLUMNS, read_probabilities, write_probabilities

#: Clip names whose labels the names carry (so a CSV of them is a reference), three actors.
CLIPS = [f"A{actor}_{rest}" for actor in (101, 102, 103) for rest in
         ("ang_int1_ver1", "hap_int2_ver1", "neu_sit1_ver1", "mix_ang_hap_30_70_ver1", "mix_fea_sad_50_50_ver1",
          "mix_disg_sad_70_30_ver1")]
HEADER = "clip_id," + ",".join(PROBABILITY_COLUMNS)


def _row(clip: str, values=(0.1, 0.1, 0.1, 0.5, 0.1, 0.1)) -> str:
    return ",".join([clip, *(f"{v:.6f}" if isinstance(v, float) else str(v) for v in values)])


def _good_text() -> str:
    return "\n".join([HEADER, *(_row(clip) for clip in CLIPS)]) + "\n"


def one_line_cli_error(capsys, argv, *needles) -> str:
    code = blemore.main([str(a) for a in argv])
    _, err = capsys.readouterr()
    assert code == 1, err
    lines = [line for line in err.strip().splitlines() if "Loading weights" not in line]  # transformers' bar
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert str(needle) in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def references(tmp_path):
    path = tmp_path / "references.csv"
    path.write_text("filename\n" + "\n".join(CLIPS) + "\n")
    return path


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.csv"
    path.write_text(_good_text())
    return path


# --- one reader: what a probabilities.csv may hold -----------------------------------------------------------------

BAD_FILES = {
    # name: (bytes, what the message says)
    "short_row": ((HEADER + "\n" + _row(CLIPS[0]) + "\n" + _row(CLIPS[1])[:-9] + "\n").encode(), ":3: 6 cells"),
    "header_only": ((HEADER + "\n").encode(), "a header but no clip"),
    "empty": (b"", "empty"),
    "latin1": ((HEADER + "\n" + _row("A101_ang_int1_ver1") + "\n" + _row("caf\xe9") + "\n").encode("latin-1"),
               ":3: not UTF-8"),
    "huge_field": ((HEADER + "\n" + _row("x" * (128 * 1024 + 10)) + "\n").encode(), "not a readable CSV"),
    "no_p_neu": ((",".join(HEADER.split(",")[:-1]) + "\n" + ",".join(_row(CLIPS[0]).split(",")[:-1]) + "\n").encode(),
                 "no p_neu column"),
    "nan": ((HEADER + "\n" + _row(CLIPS[0], (0.5, "nan", 0.1, 0.1, 0.1, 0.2)) + "\n").encode(),
            f"{CLIPS[0]}: p_disg is nan, not a finite number"),
    "inf": ((HEADER + "\n" + _row(CLIPS[0], (0.5, 0.1, 0.1, 0.1, 0.2, "inf")) + "\n").encode(), "p_neu is inf"),
    "negative": ((HEADER + "\n" + _row(CLIPS[0], (-0.1, 0.3, 0.2, 0.2, 0.2, 0.2)) + "\n").encode(),
                 "p_ang is -0.1, outside [0, 1]"),
    "above_one": ((HEADER + "\n" + _row(CLIPS[0], (1.5, 0.0, 0.0, 0.0, 0.0, 0.0)) + "\n").encode(), "outside [0, 1]"),
    "not_normalised": ((HEADER + "\n" + _row(CLIPS[0], (0.5, 0.5, 0.5, 0.0, 0.0, 0.0)) + "\n").encode(),
                       "sum to 1.5, not 1"),
    "duplicate": ((HEADER + "\n" + _row(CLIPS[0]) + "\n" + _row(CLIPS[0]) + "\n").encode(),
                  f":3: clip {CLIPS[0]} is listed twice (first on line 2)"),
    "not_a_number": ((HEADER + "\n" + _row(CLIPS[0], ("abc", 0.1, 0.1, 0.1, 0.1, 0.5)) + "\n").encode(),
                     "p_ang is 'abc', not a number"),
    "bad_outcome": ((HEADER + ",outcome\n" + _row(CLIPS[0]) + ",happy\n").encode(), "outcome 'happy'"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_the_reader_refuses_a_bad_probabilities_file_in_one_line(tmp_path, name):
    data, needle = BAD_FILES[name]
    path = tmp_path / f"{name}.csv"
    path.write_bytes(data)
    with pytest.raises(blemore.BlemoreError) as caught:
        read_probabilities(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path)) and needle in message, message


def test_a_byte_order_mark_is_read_like_the_same_file_without_it(tmp_path, good):
    marked = tmp_path / "bom.csv"
    marked.write_bytes(b"\xef\xbb\xbf" + good.read_bytes())
    ids, values, truth = read_probabilities(marked)
    plain = read_probabilities(good)
    assert ids == plain[0] and np.array_equal(values, plain[1]) and truth is None


def test_written_files_read_back_and_nothing_unreadable_is_written(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.dirichlet(np.ones(6), len(CLIPS))
    truth = rng.integers(0, 36, len(CLIPS))
    path = write_probabilities(tmp_path / "p.csv", CLIPS, values, truth)
    ids, read, read_truth = read_probabilities(path)
    assert ids == CLIPS and np.allclose(read, values, atol=1e-6) and np.array_equal(read_truth, truth)
    values[4, 2] = np.nan
    with pytest.raises(blemore.BlemoreError, match=f"clip {CLIPS[4]}: p_fea is nan"):
        write_probabilities(tmp_path / "nan.csv", CLIPS, values)
    assert not (tmp_path / "nan.csv").exists()


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_compare_and_report_say_one_line_for_a_bad_probabilities_file(tmp_path, capsys, references, good, name):
    data, needle = BAD_FILES[name]
    bad = tmp_path / f"{name}.csv"
    bad.write_bytes(data)
    one_line_cli_error(capsys, ["compare", good, bad, "-r", references, "--thresholds-a", 0.15, 0.2,
                                "--thresholds-b", 0.15, 0.2, "--resamples", 50], bad, needle)
    one_line_cli_error(capsys, ["report", bad, "-r", references, "--thresholds", 0.15, 0.2, "-o", tmp_path / "r",
                                "--resamples", 50], bad, needle)


def test_compare_reads_a_file_with_a_byte_order_mark(tmp_path, capsys, references, good):
    marked = tmp_path / "bom.csv"
    marked.write_bytes(b"\xef\xbb\xbf" + good.read_bytes())
    assert blemore.main(["compare", str(good), str(marked), "-r", str(references), "--thresholds-a", "0.15", "0.2",
                         "--thresholds-b", "0.15", "0.2", "--resamples", "50"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["difference"]["score"] == 0.0


def test_a_reference_csv_with_a_huge_field_is_one_line(tmp_path, capsys, good):
    references = tmp_path / "references.csv"
    references.write_text("filename,notes\n" + "\n".join(f"{clip}," for clip in CLIPS[:-1])
                          + f"\n{CLIPS[-1]},{'x' * (128 * 1024 + 10)}\n")
    line = one_line_cli_error(capsys, ["compare", good, good, "-r", references, "--thresholds-a", 0.15, 0.2,
                                       "--thresholds-b", 0.15, 0.2], references)
    assert "field" in line
    one_line_cli_error(capsys, ["score", tmp_path / "none.json", "-r", references], references)


# --- ensemble: non-finite members refused, no NaN in its JSON ------------------------------------------------------


def _ensemble_inputs(tmp_path, outcomes: np.ndarray, spoil=None):
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(outcomes)
    clip_ids = [f"clip_{i:04d}" for i in range(n)]
    dataset = tmp_path / "blemore"
    (dataset / "data").mkdir(parents=True)
    pq.write_table(pa.table({"clip_id": clip_ids, "split": ["train"] * n,
                             "fold": pa.array([i % 5 for i in range(n)], pa.int64()),
                             "outcome": pa.array([int(o) for o in outcomes], pa.int64())}),
                   dataset / "data" / "train-00000-of-00001.parquet")
    rng = np.random.default_rng(1)
    targets = np.array([blemore.soft_target(o.emotions, o.salience) for o in blemore.OUTCOMES])
    runs = []
    for name in ("a", "b"):
        values = 0.6 * targets[outcomes] + 0.4 * rng.dirichlet(np.ones(6), n)
        run = tmp_path / name
        run.mkdir()
        path = write_probabilities(run / "oof_probabilities.csv", clip_ids, values, outcomes)
        if spoil is not None and name == "b":
            lines = path.read_text().splitlines()
            lines[7] = spoil(lines[7])
            path.write_text("\n".join(lines) + "\n")
        runs.append(run)
    return dataset, runs


def test_ensemble_refuses_a_member_with_a_nan_probability(tmp_path, capsys):
    outcomes = np.random.default_rng(0).integers(0, 36, 60)
    dataset, runs = _ensemble_inputs(tmp_path, outcomes, spoil=lambda line: line.replace(line.split(",")[3], "nan"))
    one_line_cli_error(capsys, ["ensemble", *runs, "--dataset", dataset, "--output", tmp_path / "out"],
                       runs[1] / "oof_probabilities.csv", ":8:", "not a finite number")
    assert not (tmp_path / "out").exists()


def test_ensemble_json_has_no_nan_token_where_a_figure_is_undefined(tmp_path, capsys):
    singles = [i for i, o in enumerate(blemore.OUTCOMES) if not o.is_blend]
    outcomes = np.random.default_rng(0).choice(singles, 60)  # no blend: every salience accuracy is undefined
    dataset, runs = _ensemble_inputs(tmp_path, outcomes)
    assert blemore.main(["ensemble", *map(str, runs), "--dataset", str(dataset), "--output", str(tmp_path / "o")]) == 0
    capsys.readouterr()
    text = (tmp_path / "o" / "ensemble.json").read_text()

    def refuse(constant):
        raise AssertionError(f"{constant} in ensemble.json")

    report = json.loads(text, parse_constant=refuse)
    assert report["nested"]["pooled"]["acc_salience"] is None
    assert math.isfinite(report["nested"]["pooled"]["acc_presence"])


# --- features configs: made from this dataset's clips, or refused -------------------------------------------------


@pytest.fixture(scope="module")
def features_dataset(prepared_dataset, tmp_path_factory):
    """A copy of the prepared dataset with a features config ``toy`` (labels plus noise) whose provenance records
    its clips as `blemore features` does, and a linear head trained on it."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from blemore_toolkit.features.configs import FEATURES_DIR, PROVENANCE_FILE, feature_columns, register_config
    from blemore_toolkit.features.dataset_clips import clips_record, read_dataset_labels
    from blemore_toolkit.features.extraction import aggregate

    root = tmp_path_factory.mktemp("features")
    dataset = root / "blemore"
    shutil.copytree(prepared_dataset, dataset)
    rng = np.random.default_rng(4)
    columns = ["clip_id", "split", "fold", "outcome", "soft_target", "presence"]
    features = feature_columns(6)
    (dataset / FEATURES_DIR / "toy").mkdir(parents=True)
    for shard in sorted((dataset / "data").glob("*.parquet")):
        records = []
        for row in pq.read_table(shard, columns=columns).to_pylist():
            sequence = np.array(row["soft_target"] or [0.0] * 6)[None, :] + 0.1 * rng.normal(size=(4, 6))
            records.append(features.encode_example({**row, "features": aggregate(sequence), "sequence": sequence,
                                                    "num_windows": 4}))
        pq.write_table(pa.Table.from_pylist(records, schema=features.arrow_schema),
                       dataset / FEATURES_DIR / "toy" / shard.name)
    (dataset / FEATURES_DIR / "toy" / PROVENANCE_FILE).write_text(json.dumps(
        {"config_name": "toy", "encoder": "labels plus noise", "kind": "hand-built",
         "clips": clips_record(read_dataset_labels(dataset))}))
    register_config(dataset, "toy", 6)
    head = root / "head"
    assert blemore.main(["heads", "toy", "--dataset", str(dataset), "--head", "linear", "--epochs", "3",
                         "--output", str(head), "--quiet"]) == 0
    return dataset, head


def _other_dataset(root, source, change) -> object:
    """A folder whose data/ lists ``source``'s clips changed by ``change(rows)``, holding ``source``'s features."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from blemore_toolkit.features.dataset_clips import read_dataset_labels

    rows = [{"clip_id": clip, "split": split, "fold": None if fold < 0 else fold, "outcome": None if o < 0 else o}
            for clip, (split, fold, o) in read_dataset_labels(source).items()]
    change(rows)
    other = root / "other"
    (other / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema([("clip_id", pa.string()), ("split", pa.string()),
                                                                 ("fold", pa.int64()), ("outcome", pa.int64())])),
                   other / "data" / "train-00000-of-00001.parquet")
    shutil.copytree(source / "features", other / "features")
    return other


def _rename_test_clips(rows):
    for row in rows:
        if row["split"] == "test":
            row["clip_id"] = row["clip_id"].replace("test_", "test_9")


def test_heads_and_predict_refuse_a_features_config_copied_from_another_dataset(features_dataset, tmp_path, capsys):
    dataset, head = features_dataset
    other = _other_dataset(tmp_path, dataset, _rename_test_clips)
    line = one_line_cli_error(capsys, ["heads", "toy", "--dataset", other, "--head", "linear", "--epochs", "1",
                                       "--output", tmp_path / "h", "--quiet"], "features config 'toy'", other,
                              "is not in the dataset")
    assert "test_" in line
    one_line_cli_error(capsys, ["predict", head, other, "--output-dir", tmp_path / "p"], "is not in the dataset")
    assert not (tmp_path / "p" / "submission.zip").exists()


def test_a_features_config_whose_labels_or_folds_differ_from_the_dataset_is_refused(features_dataset, tmp_path,
                                                                                     capsys):
    dataset, _ = features_dataset

    def move_a_fold(rows):
        row = next(r for r in rows if r["split"] == "train")
        row["fold"] = (row["fold"] + 1) % 5

    other = _other_dataset(tmp_path, dataset, move_a_fold)
    one_line_cli_error(capsys, ["heads", "toy", "--dataset", other, "--head", "linear", "--epochs", "1",
                                "--output", tmp_path / "h", "--quiet"], "has fold")


def test_a_features_config_lacking_clips_of_the_dataset_is_refused(features_dataset, tmp_path, capsys):
    dataset, head = features_dataset

    def add_a_clip(rows):
        rows.append({"clip_id": "test_99999", "split": "test", "fold": None, "outcome": None})

    other = _other_dataset(tmp_path, dataset, add_a_clip)
    one_line_cli_error(capsys, ["predict", head, other, "--output-dir", tmp_path / "p"], "clip test_99999",
                       "has no features")


def test_the_recorded_clips_must_be_the_dataset_s(features_dataset, tmp_path, capsys):
    """Rows that agree with the dataset, but a provenance that records other clips (a config assembled by hand)."""
    dataset, _ = features_dataset
    other = _other_dataset(tmp_path, dataset, lambda rows: None)
    provenance = other / "features" / "toy" / "provenance.json"
    record = json.loads(provenance.read_text())
    record["clips"]["sha256"] = "0" * 64
    provenance.write_text(json.dumps(record))
    one_line_cli_error(capsys, ["heads", "toy", "--dataset", other, "--head", "linear", "--epochs", "1",
                                "--output", tmp_path / "h", "--quiet"], "records", "clips other than the dataset's")
    # the same folder with the true record is accepted
    record["clips"] = json.loads((dataset / "features" / "toy" / "provenance.json").read_text())["clips"]
    provenance.write_text(json.dumps(record))
    assert blemore.main(["heads", "toy", "--dataset", str(other), "--head", "linear", "--epochs", "1",
                         "--output", str(tmp_path / "h"), "--quiet", "--cv-only"]) == 0


# --- train --resume: only a run made from the same clips, labels and settings is reused ---------------------------


def test_resume_refuses_a_fold_finished_with_other_settings(prepared_dataset, tmp_path, capsys):
    from blemore_toolkit.training.train import TrainSettings, run_training

    settings = dict(output_dir=str(tmp_path / "run"), epochs=1, batch_size=16, num_workers=0, progress=False)
    run_training(str(prepared_dataset), "2", TrainSettings(**settings))
    capsys.readouterr()
    model = tmp_path / "run" / "fold2" / "model" / "model.safetensors"
    mtime = model.stat().st_mtime_ns
    argv = ["train", prepared_dataset, "--fold", "2", "--output-dir", tmp_path / "run", "--epochs", "1",
            "--batch-size", "16", "--num-workers", "0", "--resume"]
    line = one_line_cli_error(capsys, argv + ["--lr", "0.01"], tmp_path / "run" / "fold2", "learning_rate")
    assert "0.01 now" in line
    one_line_cli_error(capsys, argv + ["--seed", "3"], "seed: 0 there, 3 now")
    assert model.stat().st_mtime_ns == mtime  # nothing retrained or overwritten
    # the same settings reuse the finished fold
    summary = run_training(str(prepared_dataset), "2", TrainSettings(**settings, resume=True))
    assert "finished earlier" in capsys.readouterr().out and summary["validation"]["folds"]["fold2"]
    assert model.stat().st_mtime_ns == mtime


def test_resume_refuses_a_run_made_from_other_clips_or_labels(prepared_dataset, tmp_path):
    import datasets

    from blemore_toolkit.data.loading import load_split
    from blemore_toolkit.training.train import TrainSettings, check_resumable, run_fingerprint

    train = load_split(str(prepared_dataset), "fold1", "train").select_columns(["clip_id", "outcome"])
    validation = load_split(str(prepared_dataset), "fold1", "validation").select_columns(["clip_id", "outcome"])
    settings = TrainSettings(output_dir=str(tmp_path))
    run_dir = tmp_path / "fold1"
    run_dir.mkdir()
    (run_dir / "fingerprint.json").write_text(json.dumps(run_fingerprint(settings, train, validation, None)))
    check_resumable(run_dir, run_fingerprint(settings, train, validation, None), finished=True)
    relabelled = datasets.Dataset.from_dict({"clip_id": train["clip_id"],
                                             "outcome": [(train["outcome"][0] + 1) % 36] + train["outcome"][1:]})
    with pytest.raises(blemore.BlemoreError, match="training_clips: other clips or labels there, these now"):
        check_resumable(run_dir, run_fingerprint(settings, relabelled, validation, None), finished=True)
    with pytest.raises(blemore.BlemoreError, match="validation_clips"):
        check_resumable(run_dir, run_fingerprint(settings, train, validation.select(range(3)), None), finished=False)
    # a stopped run may be continued for longer, a finished one is not reused with other epochs
    longer = TrainSettings(output_dir=str(tmp_path), epochs=settings.epochs + 4)
    check_resumable(run_dir, run_fingerprint(longer, train, validation, None), finished=False)
    with pytest.raises(blemore.BlemoreError, match="settings.epochs"):
        check_resumable(run_dir, run_fingerprint(longer, train, validation, None), finished=True)
    (run_dir / "fingerprint.json").unlink()
    with pytest.raises(blemore.BlemoreError, match="cannot tell which data and settings"):
        check_resumable(run_dir, run_fingerprint(settings, train, validation, None), finished=True)
