"""The README's main job end to end: the tiny model learns the synthetic labels of actors it never saw.

Presence ≥ 0.9 and salience ≥ 0.8 on the held-out synthetic test actors is the check that labels, loss, decoding
and scoring are wired right: a salience-order bug (70/30 read as 30/70) drops salience accuracy to about a third,
a shifted label drops both to chance.
"""

import json

import pytest

import blemore

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


def test_demo_learns_held_out_actors(tmp_path, capsys):
    assert blemore.main(["demo", "--workdir", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["acc_presence"] >= 0.9, summary
    assert summary["acc_salience"] >= 0.8, summary
    assert summary["n_clips"] == summary["splits"]["test"] > 0
    for stage in ("synth_s", "prepare_s", "train_s", "predict_s", "score_s"):
        assert summary[stage] >= 0
    assert blemore.main(["validate", summary["submission"], "--against", summary["dataset"]]) == 0
    page = (tmp_path / "report" / "report.html").read_text()
    assert summary["report"] == str(tmp_path / "report" / "report.html") and page.count("data:image/png;base64,") >= 6
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["scores"]["score"] == pytest.approx(summary["score"])  # the submission's figures, with intervals
    assert report["scores"]["ci_method"] == "actor bootstrap"  # the answer key's video_id column maps test actors
